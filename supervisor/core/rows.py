"""Session rows as the decision core reads them (the gateway client parses frames into these).

Times are the gateway's own clock in milliseconds. Unknown fields are ignored: new ones
appear over time.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SessionRow(BaseModel):
    """One row of `sessions.list`, in the gateway's own clock (milliseconds)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    key: str = Field(min_length=1)
    session_id: str | None = Field(None, alias="sessionId")
    status: str | None = None
    started_at: float | None = Field(None, alias="startedAt")
    ended_at: float | None = Field(None, alias="endedAt")
    updated_at: float | None = Field(None, alias="updatedAt")
    aborted_last_run: bool | None = Field(None, alias="abortedLastRun")
    #: 2026.9.6 and later: the authoritative "is anything running" fact
    has_active_run: bool | None = Field(None, alias="hasActiveRun")
    #: [] proves idle; absent with hasActiveRun true means an owner whose run ids are unknown
    active_run_ids: tuple[str, ...] | None = Field(None, alias="activeRunIds")
    last_run_id: str | None = Field(None, alias="lastRunId")
    #: 2026.9.6: "tombstoned" once its restart recovery gave up; every turn is refused then
    restart_recovery_status: str | None = Field(None, alias="restartRecoveryStatus")

    @field_validator("started_at", "ended_at", "updated_at", mode="before")
    @classmethod
    def _timestamps_are_numbers(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a timestamp must be a number of milliseconds")
        return value

    @property
    def agent_id(self) -> str | None:
        """The agent of an `agent:<agentId>:<rest>` key."""
        parts = self.key.split(":", 2)
        return parts[1] if len(parts) == 3 and parts[0] == "agent" else None


class UnreadableRow(BaseModel):
    """A row that could not be read; it is reported as `unknown` and never acted on."""

    model_config = ConfigDict(frozen=True)

    key: str | None
    problem: str

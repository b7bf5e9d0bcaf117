"""Typed views of what gateways send. Unknown fields are ignored: new ones appear over time."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

#: scopes the supervisor may ask for, and which methods need them (shared doc, "Auth and scopes")
READ_SCOPE = "operator.read"
WRITE_SCOPE = "operator.write"
ADMIN_SCOPE = "operator.admin"
ALL_SCOPES = (READ_SCOPE, WRITE_SCOPE, ADMIN_SCOPE)


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


def parse_row(raw: object) -> SessionRow | UnreadableRow:
    """One row, or the reason it is unreadable (never raises)."""
    if not isinstance(raw, dict):
        return UnreadableRow(key=None, problem=f"row is a {type(raw).__name__}, not an object")
    key = raw.get("key") if isinstance(raw.get("key"), str) else None
    try:
        return SessionRow.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return UnreadableRow(key=key, problem=f"{where}: {err['msg']}")


_ROWS: TypeAdapter[list[SessionRow]] = TypeAdapter(list[SessionRow])


def parse_rows(raws: list[Any]) -> list[SessionRow | UnreadableRow]:
    """`[parse_row(raw) for raw in raws]`, in one validation call when every row is readable.

    The usual listing is all readable rows: validating the list at once spares a Python call
    per row (a scan's hot path). A listing with any unreadable row is parsed row by row.
    """
    try:
        return [*_ROWS.validate_python(raws)]
    except ValidationError:
        return [parse_row(raw) for raw in raws]


class Hello(BaseModel):
    """What a gateway said about itself on connect, with its clock translated to ours."""

    model_config = ConfigDict(frozen=True)

    protocol: int
    #: gateway-clock ms at which the gateway booted (its `now - uptimeMs`), if it said
    boot_time_ms: float | None = None
    boot_id: str | None = None
    server_version: str | None = None
    #: None when the gateway did not list its methods
    methods: frozenset[str] | None = None
    #: None when the gateway did not report scopes (2026.3.24 never does)
    scopes: tuple[str, ...] | None = None
    #: gateway clock minus our clock, estimated from the challenge's `ts`
    clock_offset_ms: float = 0.0

    def has_method(self, method: str) -> bool:
        """False only when the gateway listed its methods and this one is not among them."""
        return self.methods is None or method in self.methods

    @property
    def boot_marker(self) -> str | None:
        """A value that changes when the gateway restarts (bootId, else boot time to 1 s)."""
        if self.boot_id:
            return self.boot_id
        if self.boot_time_ms is not None:
            return f"t{round(self.boot_time_ms / 1000)}"
        return None

"""What travels between the steps of one recovery attempt, and what each step reports.

The attempt itself (`core.attempt.AttemptRef`) is the whole argument list of every step task.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from supervisor.core.attempt import AttemptRef
from supervisor.core.ladder import Step


class NextStep(BaseModel):
    """The step to run after this one, and how long to wait first."""

    model_config = ConfigDict(frozen=True)

    step: Step
    ref: AttemptRef
    delay_s: float = 0.0


class StepResult(BaseModel):
    """What one step did: the task's result in Flower, and one action in `heal --json`."""

    model_config = ConfigDict(frozen=True)

    gateway: str
    key: str | None
    step: str
    outcome: str
    detail: str = ""
    recovery_id: str | None = None
    attempt: int | None = None
    fencing_token: int | None = None
    dry_run: bool = False
    duration_ms: float = 0.0
    next: NextStep | None = None

    def action(self) -> dict[str, Any]:
        """The JSON form used by `heal --json` (without the follow-up step)."""
        return self.model_dump(mode="json", exclude={"next"})

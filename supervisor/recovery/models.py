"""What travels between the steps of one recovery attempt, and what each step reports.

`AttemptRef` is the whole argument list of every step task: plain JSON, gateway *name* and
session key but never a token (workers load tokens from the fleet file themselves), plus the
evidence seen at detection that every later step must still find before it acts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from supervisor.core.detect import Verdict, VerdictKind
from supervisor.core.ladder import Step


class AttemptRef(BaseModel):
    """One recovery attempt on one session, bound to what was seen when it was detected."""

    model_config = ConfigDict(frozen=True)

    gateway: str
    key: str
    #: the verdict at detection: zombie or live_overdue
    verdict: str
    session_id: str | None = None
    started_at_ms: float | None = None
    run_ids: tuple[str, ...] = ()
    recovery_id: str
    attempt: int
    lease_token: int
    dry_run: bool = False
    #: the last mutating step's answer (e.g. "aborted"), for the step after it
    after: str | None = None
    #: a live_overdue row left `running` after an abort is probed; then reset like a zombie
    probed: bool = False

    def detected(self) -> Verdict:
        """The detection-time verdict, for `ladder.compare`."""
        return Verdict(
            key=self.key,
            kind=VerdictKind(self.verdict),
            reason="as detected",
            session_id=self.session_id,
            started_at_ms=self.started_at_ms,
            run_ids=self.run_ids,
            overdue=self.verdict == VerdictKind.HELD.value,
        )

    @classmethod
    def of(
        cls,
        gateway: str,
        verdict: Verdict,
        *,
        recovery_id: str,
        attempt: int,
        lease_token: int,
        dry_run: bool,
    ) -> AttemptRef:
        return cls(
            gateway=gateway,
            key=verdict.key,
            verdict=verdict.kind.value,
            session_id=verdict.session_id,
            started_at_ms=verdict.started_at_ms,
            run_ids=verdict.run_ids,
            recovery_id=recovery_id,
            attempt=attempt,
            lease_token=lease_token,
            dry_run=dry_run,
        )

    def as_task_kwargs(self) -> dict[str, Any]:
        return {"ref": self.model_dump(mode="json")}


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

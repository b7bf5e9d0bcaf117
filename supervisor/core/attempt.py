"""One recovery attempt as it travels between steps: the evidence it is bound to and its progress.

`AttemptRef` is the whole argument list of every step task: plain JSON, gateway *name* and
session key but never a token (workers load tokens from the fleet file themselves), plus the
evidence seen at detection that every later step must still find before it acts.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from supervisor.core.detect import Verdict, VerdictKind


class AttemptRef(BaseModel):
    """One recovery attempt on one session, bound to what was seen when it was detected."""

    model_config = ConfigDict(frozen=True)

    gateway: str
    key: str
    #: the verdict at detection: zombie, held (overdue) or live_overdue
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
    #: our reset: the run ids of the users' messages it dropped from behind the lane
    dropped: tuple[str, ...] = ()
    #: when the oldest of them was sent (gateway ms), if the gateway said
    held_since_ms: float | None = None
    #: a message arrived after the final read and our reset dropped it (redeliver mode)
    collided: bool = False
    #: gateway ms when the reset step read what waited (redeliver picks up what came after)
    recorded_at_ms: float | None = None
    #: ESCALATE only: which page ("escalated": attempts exhausted; "flapping": heal budget)
    escalation: str = "escalated"
    #: messages waiting behind the lane at detection (held, zombie; None: the rows do not say)
    waiting: int | None = None

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

    @property
    def dead_lane(self) -> bool:
        """Whether this attempt treats the lane as dead (abort is evidence, reset follows)."""
        return self.verdict in (VerdictKind.ZOMBIE.value, VerdictKind.HELD.value) or self.probed

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
        escalation: str = "escalated",
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
            escalation=escalation,
            waiting=verdict.waiting,
        )

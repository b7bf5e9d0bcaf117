"""The recovery ladder: what to do next about one session, decided from facts alone.

One *episode* is one (gateway, session key, sessionId): a reset that gives the session a new id
ends the episode. Per attempt the ladder runs

    zombie        abort (evidence: "no-active-run" proves nothing runs) -> reset -> verify
    live_overdue  abort (bound to the run where the gateway allows) -> verify
                  (a row left `running` after an "aborted" answer is probed with a second abort:
                  "no-active-run" then proves it dead, and it is reset like a zombie)

Between attempts it waits an exponential backoff with jitter; after `max_attempts` failed
attempts it escalates once and stops acting until the session heals or an operator clears it.
The executor re-reads the row before every mutating step; this module never sees I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from supervisor.core.backoff import compute_backoff
from supervisor.core.detect import Verdict, VerdictKind
from supervisor.core.policy import Policy


class Step(StrEnum):
    ABORT = "abort"
    RESET = "reset"
    VERIFY = "verify"
    ESCALATE = "escalate"


class Decision(StrEnum):
    """What the scan does about a session this time."""

    NOTHING = "nothing"  # healthy, or not ours to touch
    RECOVER = "recover"  # start an attempt (its steps in `Plan.steps`)
    WAIT = "wait"  # backoff not over yet
    ESCALATE = "escalate"  # attempts exhausted: page once, then hands off
    HANDS_OFF = "hands_off"  # escalated before: wait for a heal or an operator


@dataclass(frozen=True)
class Episode:
    """What Redis remembers about one episode (all zero for a new one)."""

    attempts: int = 0
    next_not_before_ms: float = 0.0
    escalated: bool = False


@dataclass(frozen=True)
class Plan:
    decision: Decision
    steps: tuple[Step, ...] = ()
    not_before_ms: float | None = None
    reason: str = ""


def steps_for(kind: VerdictKind) -> tuple[Step, ...]:
    """The steps of one attempt for a verdict that needs action."""
    if kind is VerdictKind.HELD:
        # the active run is the held message: an abort would drop it, and proves nothing
        return (Step.RESET, Step.VERIFY)
    if kind is VerdictKind.ZOMBIE:
        return (Step.ABORT, Step.RESET, Step.VERIFY)
    if kind is VerdictKind.LIVE_OVERDUE:
        return (Step.ABORT, Step.VERIFY)
    return ()


def decide(verdict: Verdict, episode: Episode, *, now_ms: float, policy: Policy) -> Plan:
    """The scan's decision for one classified session."""
    if not verdict.needs_action:
        return Plan(Decision.NOTHING, reason=f"verdict {verdict.kind.value}")
    if episode.escalated:
        return Plan(Decision.HANDS_OFF, reason="escalated: waiting for a heal or an operator")
    if episode.attempts >= policy.max_attempts:
        return Plan(
            Decision.ESCALATE,
            (Step.ESCALATE,),
            reason=f"{episode.attempts} attempt(s) did not heal it",
        )
    if now_ms < episode.next_not_before_ms:
        return Plan(
            Decision.WAIT,
            not_before_ms=episode.next_not_before_ms,
            reason=f"backing off after attempt {episode.attempts}",
        )
    return Plan(
        Decision.RECOVER,
        steps_for(verdict.kind),
        reason=f"attempt {episode.attempts + 1} of {policy.max_attempts}",
    )


def next_not_before(attempts: int, *, now_ms: float, policy: Policy, seed: str) -> float:
    """When the next attempt may start, after `attempts` failed ones."""
    delay_s = compute_backoff(
        attempts,
        base_s=policy.backoff_base,
        factor=policy.backoff_factor,
        max_s=policy.backoff_max,
        jitter=policy.backoff_jitter,
        seed=seed,
    )
    return now_ms + delay_s * 1000


class Binding(StrEnum):
    """How a re-read row compares with what was seen at detection."""

    SAME = "same"
    CHANGED = "changed"  # another session, another run, or no longer in need: do nothing
    HEALED = "healed"  # not running any more


def compare(detected: Verdict, now: Verdict) -> Binding:
    """Whether a step may still act: the row must be the one detected, still in need."""
    if now.kind in {VerdictKind.IDLE}:
        return Binding.HEALED
    if (
        now.session_id != detected.session_id
        or now.started_at_ms != detected.started_at_ms
        or now.run_ids != detected.run_ids
    ):
        return Binding.CHANGED
    if now.kind is not detected.kind:
        return Binding.CHANGED
    return Binding.SAME

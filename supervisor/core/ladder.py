"""The recovery ladder as one state machine: every decision about one session, from facts alone.

`next_action(attempt, observation, policy, now_ms)` is the one function that decides. The edges
(`recovery/scanner.py`, `recovery/steps.py`) only read, call it, and do what it says:

    Found (a scan's verdict)   -> NOTHING | WAIT | HANDS_OFF | ESCALATE | START(first step)
    Read  (a step's final read, right before acting)
                               -> SEND | NEXT(verify) | STOP
    Answered (what the gateway answered, or what an earlier delivery recorded)
                               -> NEXT(step) | STOP | CLOSE(collided)
    Read  (verify)             -> CLOSE(healed) | CONFIRM | NEXT(probe abort) | STOP(ineffective)

One *episode* is one (gateway, session key, sessionId). Per attempt the ladder runs

    zombie        abort (evidence: "no-active-run" proves nothing runs) -> reset -> verify
    held          reset -> verify (an abort would drop the held message's run, and proves nothing)
    live_overdue  abort -> verify; a row left `running` after an "aborted" answer is probed with
                  a second abort: "no-active-run" then proves it dead, and it is reset

Between attempts it waits an exponential backoff with jitter; after `max_attempts` failed
attempts it escalates once and stops acting until the session heals or an operator clears it.
A session healed `max_heals_per_session` times within `heal_budget_window` (counted by session
key: a reset gives 2026.3.24 sessions a new id) is flapping: escalated once, then hands off.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from supervisor.core.attempt import AttemptRef
from supervisor.core.backoff import compute_backoff
from supervisor.core.detect import Verdict, VerdictKind
from supervisor.core.policy import Policy
from supervisor.core.rules import is_healthy


class Step(StrEnum):
    ABORT = "abort"
    RESET = "reset"
    VERIFY = "verify"
    #: `held_messages = "redeliver"`: send the messages our reset dropped again, after verify
    REDELIVER = "redeliver"
    ESCALATE = "escalate"


#: mutating steps: they send a request that changes the session
MUTATING = frozenset({Step.ABORT, Step.RESET})

#: what an earlier delivery of a step records when it decided not to send
NOT_SENT = frozenset({"healed_before", "changed", "gone", "stale_read", "lease_lost"})


class Kind(StrEnum):
    """What the edge does next."""

    NOTHING = "nothing"  # healthy, or not ours to touch
    WAIT = "wait"  # backoff not over yet
    HANDS_OFF = "hands_off"  # escalated or flapping: wait for a heal, an operator or the window
    ESCALATE = "escalate"  # page once (Action.page says which), then hands off
    START = "start"  # start an attempt: lease, count it, run `step`
    SEND = "send"  # the final read binds: send `step`'s request now, nothing in between
    NEXT = "next"  # run `step` next (after the settle delay when `settle`)
    CONFIRM = "confirm"  # the session was not listed: read once more before believing it gone
    CLOSE = "close"  # the episode is over: close it (the one closing function)
    STOP = "stop"  # this attempt ends here without closing the episode


@dataclass(frozen=True)
class Action:
    kind: Kind
    outcome: str = ""
    reason: str = ""
    step: Step | None = None
    #: NEXT: wait the settle (verify) delay first, so the gateway's state catches up
    settle: bool = False
    #: NEXT: fields of the attempt that change for the next step
    update: Mapping[str, object] = field(default_factory=dict)
    #: STOP: release our lease (False when it may be someone else's by now)
    release: bool = True
    #: STOP: recorded as the attempt's last error (shown when it escalates)
    error: str | None = None
    #: ESCALATE / CLOSE: the incident kind paged once ("escalated", "flapping", "collided")
    page: str | None = None
    #: CLOSE: the supervisor healed it (metrics, audit "healed"); False for a collision
    healed: bool = False
    #: WAIT: when the next attempt may start
    not_before_ms: float | None = None


# -- observations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Episode:
    """What Redis remembers about a session (all zero for a new one)."""

    attempts: int = 0
    next_not_before_ms: float = 0.0
    escalated: bool = False
    #: escalated as flapping: hands off until cleared or the budget window passes
    flapping: bool = False
    #: our resets of this session key within `heal_budget_window`
    heals_in_window: int = 0
    #: our resets on this gateway within the last hour
    gateway_heals_in_hour: int = 0


@dataclass(frozen=True)
class Found:
    """A scan classified a session."""

    verdict: Verdict
    episode: Episode
    #: the gateway restarted since the last scan: the backoff does not apply (a boot sweep)
    new_boot: bool = False
    #: an operator asked for this session (`recover`): the backoff does not apply
    forced: bool = False


@dataclass(frozen=True)
class Read:
    """A step read the session (`now` None: not listed), right before acting or to verify."""

    step: Step
    now: Verdict | None
    #: a second, independent read did not list it either
    absence_confirmed: bool = False
    #: seconds (monotonic) since the read was sent
    read_age_s: float = 0.0
    #: seconds (monotonic) left before our lease's local deadline
    lease_left_s: float = math.inf
    #: the connection may reset lanes (operator.admin granted, or the gateway does not say)
    can_reset: bool = True


@dataclass(frozen=True)
class Answered:
    """A mutating step's answer (`answer` None: a delivery claimed it and died, answer unknown)."""

    step: Step
    answer: str | None
    #: a run started on the session after the final read (seen on our socket before the answer)
    collided: bool = False
    #: the answer is another delivery's, read from its step claim: this one sent nothing
    resumed: bool = False
    #: a reset: the run ids of the users' messages waiting behind the lane when it was sent
    #: (2026.9.6 drops them with the lane), recorded by the step right before
    waiting: tuple[str, ...] = ()
    #: when the oldest of them was sent (gateway ms), if the gateway said
    held_since_ms: float | None = None
    #: the gateway lists the messages waiting behind a lane (chat.history `pendingInputs`),
    #: so what the reset drops can be read back afterwards
    readable: bool = False
    #: gateway ms when the step read what waited (None: it did not read)
    recorded_at_ms: float | None = None


@dataclass(frozen=True)
class Redelivered:
    """What the redeliver step did with the messages our reset dropped (counts by outcome)."""

    #: sent again (or found already sent again by an earlier delivery)
    sent: int = 0
    #: waited longer than `redeliver_max_age`: reported, not sent
    too_old: int = 0
    #: their text could not be read before the reset (no chat.history, or not listed)
    unreadable: int = 0
    #: the gateway shows them answered or still queued: nothing was lost, nothing sent
    not_lost: int = 0
    #: the send failed (the gateway refused it or did not answer)
    failed: int = 0
    #: when the oldest of them was sent by its user (gateway ms), when known
    since_ms: float | None = None


Observation = Found | Read | Answered | Redelivered


# -- the one function -------------------------------------------------------------------------


def next_action(
    attempt: AttemptRef | None, observation: Observation, policy: Policy, now_ms: float
) -> Action:
    """What to do next about one session, given what was just observed."""
    if isinstance(observation, Found):
        return _found(observation, policy, now_ms)
    if attempt is None:
        raise ValueError(f"{type(observation).__name__} needs the attempt it belongs to")
    if isinstance(observation, Redelivered):
        return _redelivered(attempt, observation)
    if isinstance(observation, Read):
        if observation.step is Step.ESCALATE:
            raise ValueError("the escalate step reads nothing: it pages")
        if observation.step is Step.VERIFY:
            return _verify(attempt, observation, policy)
        return _final_read(attempt, observation, policy)
    return _answered(attempt, observation, policy)


def first_step(kind: VerdictKind) -> Step:
    """The first step of an attempt on a session in need."""
    return Step.RESET if kind is VerdictKind.HELD else Step.ABORT


def _found(found: Found, policy: Policy, now_ms: float) -> Action:
    verdict, episode = found.verdict, found.episode
    if not verdict.needs_action:
        return Action(Kind.NOTHING, reason=f"verdict {verdict.kind.value}")
    if episode.escalated:
        return Action(Kind.HANDS_OFF, reason="escalated: waiting for a heal or an operator")
    if episode.flapping:
        return Action(
            Kind.HANDS_OFF,
            reason="flapping: hands off until `clear` or the heal budget window passes",
        )
    if episode.attempts >= policy.max_attempts:
        return Action(
            Kind.ESCALATE,
            page="escalated",
            reason=f"{episode.attempts} attempt(s) did not heal it",
        )
    if episode.heals_in_window >= policy.max_heals_per_session:
        return Action(
            Kind.ESCALATE,
            page="flapping",
            reason=f"reset {episode.heals_in_window} time(s) within "
            f"{_span(policy.heal_budget_window)} and dead again: over max_heals_per_session "
            f"({policy.max_heals_per_session})",
        )
    if episode.gateway_heals_in_hour >= policy.max_heals_per_gateway_hour:
        return Action(
            Kind.HANDS_OFF,
            page="gateway_flapping",
            reason=f"{episode.gateway_heals_in_hour} reset(s) on this gateway within the hour: "
            f"over max_heals_per_gateway_hour ({policy.max_heals_per_gateway_hour})",
        )
    backoff_applies = not (found.new_boot or found.forced)
    if backoff_applies and now_ms < episode.next_not_before_ms:
        return Action(
            Kind.WAIT,
            not_before_ms=episode.next_not_before_ms,
            reason=f"backing off after attempt {episode.attempts}",
        )
    return Action(
        Kind.START,
        step=first_step(verdict.kind),
        reason=f"attempt {episode.attempts + 1} of {policy.max_attempts}",
    )


def _final_read(attempt: AttemptRef, read: Read, policy: Policy) -> Action:
    step = read.step
    now = read.now
    if now is None:
        # not closing anything on one listing's word: the scan confirms absence before closing
        return Action(Kind.STOP, "gone", "the gateway no longer lists the session")
    binding = compare(attempt.detected(), now)
    if binding is Binding.HEALED:
        return Action(
            Kind.NEXT,
            "healed_before",
            f"already healthy before {step.value}: {now.reason}",
            step=Step.VERIFY,
        )
    if binding is Binding.CHANGED:
        return Action(
            Kind.STOP,
            "changed",
            f"the session changed since detection ({now.kind.value}: {now.reason}); not acting",
        )
    if read.lease_left_s <= 0:
        return Action(
            Kind.STOP,
            "lease_lost",
            "our lease's deadline passed before the request could be sent; not acting",
            release=False,
        )
    if read.read_age_s > policy.act_window:
        return Action(
            Kind.STOP,
            "stale_read",
            f"{read.read_age_s * 1000:.0f} ms since the final read, over act_window "
            f"{policy.act_window * 1000:.0f} ms; not acting on an old read",
        )
    if step is Step.RESET and not read.can_reset and not attempt.dry_run:
        # 2026.9.6 needs operator.admin for /new too; without it /new only queues a message
        # behind the dead lane (measured): send nothing, let verify find it and escalate
        return Action(
            Kind.NEXT,
            "cannot_reset",
            "the gateway did not grant operator.admin: neither sessions.reset nor /new can "
            "clear this lane",
            step=Step.VERIFY,
            settle=True,
        )
    return Action(Kind.SEND, "sending", step=step)


def _answered(attempt: AttemptRef, answered: Answered, policy: Policy) -> Action:
    step, answer = answered.step, answered.answer
    if (
        answered.collided
        and step is Step.RESET
        and answer in ("reset", "new_sent")
        and answered.readable
        and policy.held_messages == "redeliver"
    ):
        # the user's message the reset threw away waits, `interrupted`, in the gateway's own
        # list: verify the lane, then give it back (redeliver finds it there); only if that
        # fails is it the collision page
        return Action(
            Kind.NEXT,
            "collided",
            "a message reached the session after the final read and the reset dropped it: "
            "verifying, then redelivering it",
            step=Step.VERIFY,
            settle=True,
            update={
                "after": answer, "collided": True, "dropped": answered.waiting,
                "held_since_ms": answered.held_since_ms,
                "recorded_at_ms": answered.recorded_at_ms,
            },
        )  # fmt: skip
    if answered.collided:
        return Action(
            Kind.CLOSE,
            "collided",
            f"a run started on the session after the final read, and the {step.value} "
            "destroyed it: not healed, reported",
            page="collided",
        )
    if answered.resumed and answer in NOT_SENT:
        return Action(
            Kind.STOP,
            "resumed",
            f"an earlier delivery of this step did not send ({answer}); nothing to resume",
            release=False,
        )
    if answer in NOT_SENT:
        return Action(Kind.STOP, answer or "", f"{step.value} not sent: {answer}")
    action = (
        _after_abort(attempt, answer)
        if step is Step.ABORT
        else _after_reset(attempt, answer, answered)
    )
    if answered.resumed and action.kind is Kind.NEXT and answer is not None:
        return Action(
            Kind.NEXT,
            "resumed",
            f"already answered {answer!r}; {action.reason}",
            step=action.step,
            settle=action.settle,
            update=action.update,
        )
    return action


def _after_abort(attempt: AttemptRef, answer: str | None) -> Action:
    dead = attempt.dead_lane
    if answer is None:
        # a delivery of this step died after claiming it: never abort again blindly.
        # A dead lane goes on to reset (its final read binds again); an overdue run to verify.
        return Action(
            Kind.NEXT,
            "resumed",
            "an earlier delivery claimed this abort and died; not sending it again",
            step=Step.RESET if dead else Step.VERIFY,
            settle=True,
        )
    if answer == "dry_run":
        return Action(
            Kind.NEXT,
            "would_abort",
            "dry run: sessions.abort not sent",
            step=Step.RESET if dead else Step.VERIFY,
        )
    if dead:
        if answer == "no-active-run":
            why = "no active run: the lane is dead" + (" (probe)" if attempt.probed else "")
            return Action(
                Kind.NEXT, "no_active_run", why, step=Step.RESET, update={"after": answer}
            )
        # the gateway aborted a run: something was alive after all; never reset over it
        return Action(
            Kind.STOP,
            "aborted_live_run",
            f"abort answered {answer!r}: a run was live; stopping without reset",
        )
    return Action(
        Kind.NEXT,
        "aborted" if answer == "aborted" else answer.replace("-", "_"),
        f"abort answered {answer!r}",
        step=Step.VERIFY,
        settle=True,
        update={"after": answer},
    )


def _after_reset(attempt: AttemptRef, answer: str | None, answered: Answered) -> Action:
    waiting, held_since_ms = answered.waiting, answered.held_since_ms
    if answer is None:
        return Action(
            Kind.NEXT,
            "resumed",
            "an earlier delivery already sent it (answer unknown)",
            step=Step.VERIFY,
            settle=True,
        )
    if answer == "dry_run":
        return Action(
            Kind.NEXT, "would_reset", "dry run: nothing sent", step=Step.VERIFY, settle=True
        )
    if answer == "session-changed":
        return Action(Kind.STOP, "changed", "the gateway refused: the session id changed")
    reasons = {
        "reset": "sessions.reset accepted",
        "new_sent": "sessions.reset unusable; sent /new instead",
        "cannot_reset": "neither sessions.reset nor /new is allowed on this connection",
    }
    reason = reasons.get(answer, f"reset answered {answer!r}")
    update: dict[str, object] = {"after": answer}
    if answered.recorded_at_ms is not None:
        update["recorded_at_ms"] = answered.recorded_at_ms
    if answer in ("reset", "new_sent") and waiting:
        # 2026.9.6 drops the messages held behind the dead lane with it (measured): say so
        reason += (
            f"; it dropped {len(waiting)} message(s) held behind the dead lane "
            f"(runs {', '.join(waiting)}), waiting since {_since(held_since_ms)}"
        )
        update["dropped"] = waiting
        update["held_since_ms"] = held_since_ms
    return Action(
        Kind.NEXT,
        answer,
        reason,
        step=Step.VERIFY,
        settle=True,
        update=update,
    )


def _since(ms: float | None) -> str:
    if ms is None:
        return "an unknown time (the gateway did not say)"
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def dropped_held(attempt: AttemptRef) -> bool:
    """Whether our own reset (or /new) threw away users' messages waiting behind the lane (seen
    before it, or arriving while it was on its way: a collision)."""
    return (
        (bool(attempt.dropped) or attempt.collided)
        and attempt.after in ("reset", "new_sent")
        and not attempt.dry_run
    )


def _healed(attempt: AttemptRef, reason: str, policy: Policy, *, listed: bool) -> Action:
    if dropped_held(attempt):
        if policy.held_messages == "redeliver" and listed:
            return Action(
                Kind.NEXT,
                "healed",
                f"{reason}; redelivering the message(s) the reset dropped",
                step=Step.REDELIVER,
            )
        if attempt.collided:
            return Action(
                Kind.CLOSE,
                "collided",
                f"{reason}; a message that reached the session after the final read was "
                "dropped by the reset and cannot be given back: not healed, reported",
                page="collided",
            )
        # report: one page says whose messages went unanswered, so a person can follow up
        return Action(
            Kind.CLOSE,
            "healed",
            f"{reason}; the reset dropped {len(attempt.dropped)} held message(s), waiting since "
            f"{_since(attempt.held_since_ms)}: reported",
            healed=True,
            page="messages_dropped",
        )
    return Action(Kind.CLOSE, "healed", reason, healed=True)


def _redelivered(attempt: AttemptRef, done: Redelivered) -> Action:
    if attempt.collided and (not done.sent or done.too_old + done.unreadable + done.failed):
        return Action(
            Kind.CLOSE,
            "collided",
            "a run started on the session after the final read, and the reset destroyed it; "
            f"redelivery: {_counts(done)}: not healed, reported",
            page="collided",
        )
    return _given_back(done)


def _counts(done: Redelivered) -> str:
    parts = [f"{n} {what}" for n, what in (
        (done.sent, "redelivered"), (done.too_old, "too old to redeliver"),
        (done.unreadable, "not readable"), (done.not_lost, "not lost"),
        (done.failed, "failed to send"),
    ) if n]  # fmt: skip
    return ", ".join(parts) or "none found"


def _given_back(done: Redelivered) -> Action:
    reason = f"held message(s): {_counts(done)}"
    lost = done.too_old + done.unreadable + done.failed
    return Action(
        Kind.CLOSE,
        "redelivered" if done.sent and not lost else "not_redelivered" if lost else "healed",
        reason,
        healed=True,
        # what we dropped and could not give back is a person's to follow up
        page="messages_dropped" if lost else None,
    )


def _verify(attempt: AttemptRef, read: Read, policy: Policy) -> Action:
    now = read.now
    if now is None:
        if not read.absence_confirmed:
            return Action(Kind.CONFIRM, reason="not listed: reading once more before closing")
        return _healed(
            attempt, "no longer listed (confirmed by a second read)", policy, listed=False
        )
    if is_healthy(now):
        return _healed(attempt, f"{now.kind.value}: {now.reason}", policy, listed=True)
    if attempt.collided:
        return Action(
            Kind.CLOSE,
            "collided",
            f"a message reached the session after the final read and the reset dropped it; "
            f"the lane is not healthy ({now.kind.value}): not healed, reported",
            page="collided",
        )
    same = compare(attempt.detected(), now) is Binding.SAME
    if same and attempt.verdict == VerdictKind.LIVE_OVERDUE.value and not attempt.probed:
        # 2026.3.24 leaves the row `running` after aborting a live run: probe it
        return Action(
            Kind.NEXT,
            "still_running",
            "the row stayed running after the abort; probing with a second abort",
            step=Step.ABORT,
            update={"probed": True, "after": None},
        )
    if attempt.dry_run:
        return Action(Kind.STOP, "unchanged", f"dry run: {now.kind.value}")
    if same and attempt.after in ("reset", "new_sent"):
        # the gateway said the lane was reset and the row is the very same (openclaw #126836):
        # another reset would only say so again; hand it to a person now, with the evidence
        detail = (
            f"the {'reset' if attempt.after == 'reset' else '/new'} was accepted and changed "
            f"nothing: still {now.kind.value}, same sessionId and startedAt ({now.reason})"
        )
        return Action(
            Kind.NEXT, "ineffective", detail, step=Step.ESCALATE, error=f"ineffective: {detail}"
        )
    detail = f"still {now.kind.value} after attempt {attempt.attempt}: {now.reason}"
    return Action(Kind.STOP, "ineffective", detail, error=f"ineffective: {detail}")


# -- helpers the edges share -----------------------------------------------------------------


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


def counts_toward_budget(step: Step, answer: str | None) -> bool:
    """Whether a step's answer spends the heal budget: every lane we actually reset does."""
    return step is Step.RESET and answer in ("reset", "new_sent")


class Binding(StrEnum):
    """How a re-read row compares with what was seen at detection."""

    SAME = "same"
    CHANGED = "changed"  # another session, another run, or no longer in need: do nothing
    HEALED = "healed"  # healthy now


def compare(detected: Verdict, now: Verdict) -> Binding:
    """Whether a step may still act: the row must be the one detected, still in need.

    A row that runs nothing is healed whoever cleared it; a row with another run (or another
    session) is not ours to judge: CHANGED, and the next scan decides afresh.
    """
    if now.kind is VerdictKind.IDLE:
        return Binding.HEALED
    if (
        now.session_id != detected.session_id
        or now.started_at_ms != detected.started_at_ms
        or now.run_ids != detected.run_ids
    ):
        return Binding.CHANGED
    if is_healthy(now):
        return Binding.HEALED
    if now.kind is not detected.kind:
        return Binding.CHANGED
    return Binding.SAME


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g}h"
    return f"{seconds:g}s"

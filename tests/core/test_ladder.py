"""`next_action`: every transition of the ladder, as parametrized matrices (pure, microseconds)."""

from __future__ import annotations

import pytest

from supervisor.core.attempt import AttemptRef
from supervisor.core.detect import Verdict, VerdictKind
from supervisor.core.ladder import (
    NOT_SENT,
    Answered,
    Binding,
    Episode,
    Found,
    Kind,
    Read,
    Redelivered,
    Step,
    compare,
    counts_toward_budget,
    next_action,
)
from supervisor.core.policy import Policy

POLICY = Policy()
NOW = 1_800_000_000_000.0


def verdict(kind: VerdictKind, *, sid: str = "s1", started: float = 1.0, runs: tuple[str, ...] = (),
            overdue: bool = False) -> Verdict:  # fmt: skip
    return Verdict(
        key="agent:a:k", kind=kind, reason="test", session_id=sid, started_at_ms=started,
        run_ids=runs, overdue=overdue,
    )  # fmt: skip


def attempt(kind: VerdictKind, **kw: object) -> AttemptRef:
    v = verdict(kind)
    ref = AttemptRef.of("gw", v, recovery_id="r1", attempt=1, lease_token=7, dry_run=False)
    return ref.model_copy(update=kw) if kw else ref


# -- start: Found ------------------------------------------------------------------------------

HELD_OVERDUE = verdict(VerdictKind.HELD, runs=("m1",), overdue=True)


@pytest.mark.parametrize(
    ("v", "episode", "found_kw", "expected", "step"),
    [
        (verdict(VerdictKind.IDLE), Episode(), {}, Kind.NOTHING, None),
        (verdict(VerdictKind.LIVE), Episode(), {}, Kind.NOTHING, None),
        (verdict(VerdictKind.UNKNOWN), Episode(), {}, Kind.NOTHING, None),
        (verdict(VerdictKind.ZOMBIE_PENDING), Episode(), {}, Kind.NOTHING, None),
        (verdict(VerdictKind.HELD, runs=("m1",)), Episode(), {}, Kind.NOTHING, None),
        (verdict(VerdictKind.ZOMBIE), Episode(), {}, Kind.START, Step.ABORT),
        (verdict(VerdictKind.LIVE_OVERDUE), Episode(), {}, Kind.START, Step.ABORT),
        (HELD_OVERDUE, Episode(), {}, Kind.START, Step.RESET),
        (verdict(VerdictKind.ZOMBIE), Episode(escalated=True), {}, Kind.HANDS_OFF, None),
        (verdict(VerdictKind.ZOMBIE), Episode(flapping=True), {}, Kind.HANDS_OFF, None),
        (verdict(VerdictKind.ZOMBIE), Episode(attempts=3), {}, Kind.ESCALATE, None),
        (verdict(VerdictKind.ZOMBIE), Episode(attempts=2), {}, Kind.START, Step.ABORT),
        (verdict(VerdictKind.ZOMBIE), Episode(heals_in_window=3), {}, Kind.ESCALATE, None),
        (verdict(VerdictKind.ZOMBIE), Episode(heals_in_window=2), {}, Kind.START, Step.ABORT),
        (verdict(VerdictKind.ZOMBIE), Episode(gateway_heals_in_hour=20), {}, Kind.HANDS_OFF, None),
        (verdict(VerdictKind.ZOMBIE), Episode(attempts=1, next_not_before_ms=NOW + 1), {},
         Kind.WAIT, None),
        (verdict(VerdictKind.ZOMBIE), Episode(attempts=1, next_not_before_ms=NOW + 1),
         {"new_boot": True}, Kind.START, Step.ABORT),
        (verdict(VerdictKind.ZOMBIE), Episode(attempts=1, next_not_before_ms=NOW + 1),
         {"forced": True}, Kind.START, Step.ABORT),
        (verdict(VerdictKind.ZOMBIE), Episode(attempts=1, next_not_before_ms=NOW), {},
         Kind.START, Step.ABORT),
    ],
)  # fmt: skip
def test_found(
    v: Verdict, episode: Episode, found_kw: dict[str, bool], expected: Kind, step: Step | None
) -> None:
    action = next_action(None, Found(v, episode, **found_kw), POLICY, NOW)
    assert action.kind is expected
    assert action.step is step


def test_pages_say_which_escalation() -> None:
    exhausted = next_action(
        None, Found(verdict(VerdictKind.ZOMBIE), Episode(attempts=3)), POLICY, NOW
    )
    flapping = next_action(
        None, Found(verdict(VerdictKind.ZOMBIE), Episode(heals_in_window=3)), POLICY, NOW
    )
    gateway = next_action(
        None, Found(verdict(VerdictKind.ZOMBIE), Episode(gateway_heals_in_hour=99)), POLICY, NOW
    )
    assert (exhausted.page, flapping.page, gateway.page) == (
        "escalated", "flapping", "gateway_flapping",
    )  # fmt: skip


def test_attempts_exhausted_escalates_before_the_budget_is_looked_at() -> None:
    both = Episode(attempts=3, heals_in_window=3)
    assert next_action(None, Found(verdict(VerdictKind.ZOMBIE), both), POLICY, NOW).page == (
        "escalated"
    )


# -- the final read of a mutating step ---------------------------------------------------------


@pytest.mark.parametrize("step", [Step.ABORT, Step.RESET])
@pytest.mark.parametrize(
    ("now", "read_kw", "expected", "outcome"),
    [
        (verdict(VerdictKind.ZOMBIE), {}, Kind.SEND, "sending"),
        (None, {}, Kind.STOP, "gone"),
        (verdict(VerdictKind.IDLE, sid="s2"), {}, Kind.NEXT, "healed_before"),
        (verdict(VerdictKind.LIVE, started=5.0), {}, Kind.STOP, "changed"),
        (verdict(VerdictKind.ZOMBIE, sid="s2"), {}, Kind.STOP, "changed"),
        (verdict(VerdictKind.ZOMBIE, started=2.0), {}, Kind.STOP, "changed"),
        (verdict(VerdictKind.ZOMBIE, runs=("x",)), {}, Kind.STOP, "changed"),
        (verdict(VerdictKind.UNKNOWN), {}, Kind.STOP, "changed"),
        (verdict(VerdictKind.ZOMBIE), {"read_age_s": 0.25}, Kind.SEND, "sending"),
        (verdict(VerdictKind.ZOMBIE), {"read_age_s": 0.2501}, Kind.STOP, "stale_read"),
        (verdict(VerdictKind.ZOMBIE), {"lease_left_s": 0.0}, Kind.STOP, "lease_lost"),
        (verdict(VerdictKind.ZOMBIE), {"lease_left_s": -3.0, "read_age_s": 9}, Kind.STOP,
         "lease_lost"),
    ],
)  # fmt: skip
def test_final_read(
    step: Step, now: Verdict | None, read_kw: dict[str, float], expected: Kind, outcome: str
) -> None:
    action = next_action(attempt(VerdictKind.ZOMBIE), Read(step, now, **read_kw), POLICY, NOW)
    assert (action.kind, action.outcome) == (expected, outcome)


def test_a_lost_lease_is_not_released_a_stale_read_is() -> None:
    zombie = verdict(VerdictKind.ZOMBIE)
    lost = next_action(
        attempt(VerdictKind.ZOMBIE), Read(Step.RESET, zombie, lease_left_s=0), POLICY, NOW
    )
    stale = next_action(
        attempt(VerdictKind.ZOMBIE), Read(Step.RESET, zombie, read_age_s=1), POLICY, NOW
    )
    assert lost.release is False and stale.release is True


def test_without_admin_a_reset_is_not_sent_and_verify_follows() -> None:
    action = next_action(
        attempt(VerdictKind.ZOMBIE), Read(Step.RESET, verdict(VerdictKind.ZOMBIE), can_reset=False),
        POLICY, NOW,
    )  # fmt: skip
    assert (action.kind, action.outcome, action.step) == (Kind.NEXT, "cannot_reset", Step.VERIFY)
    dry = attempt(VerdictKind.ZOMBIE, dry_run=True)
    assert next_action(dry, Read(Step.RESET, verdict(VerdictKind.ZOMBIE), can_reset=False),
                       POLICY, NOW).kind is Kind.SEND  # fmt: skip


def test_the_act_window_is_the_policys() -> None:
    wide = Policy(act_window=2.0)
    read = Read(Step.ABORT, verdict(VerdictKind.ZOMBIE), read_age_s=1.5)
    assert next_action(attempt(VerdictKind.ZOMBIE), read, wide, NOW).kind is Kind.SEND
    assert next_action(attempt(VerdictKind.ZOMBIE), read, POLICY, NOW).kind is Kind.STOP


# -- answers -----------------------------------------------------------------------------------

ZOMBIE, OVERDUE, HELD = VerdictKind.ZOMBIE, VerdictKind.LIVE_OVERDUE, VerdictKind.HELD


@pytest.mark.parametrize(
    ("kind", "attempt_kw", "step", "answer", "expected", "outcome", "next_step"),
    [
        (ZOMBIE, {}, Step.ABORT, "no-active-run", Kind.NEXT, "no_active_run", Step.RESET),
        (ZOMBIE, {}, Step.ABORT, "aborted", Kind.STOP, "aborted_live_run", None),
        (ZOMBIE, {}, Step.ABORT, "?", Kind.STOP, "aborted_live_run", None),
        (ZOMBIE, {}, Step.ABORT, None, Kind.NEXT, "resumed", Step.RESET),
        (ZOMBIE, {}, Step.ABORT, "dry_run", Kind.NEXT, "would_abort", Step.RESET),
        (OVERDUE, {}, Step.ABORT, "aborted", Kind.NEXT, "aborted", Step.VERIFY),
        (OVERDUE, {}, Step.ABORT, "no-active-run", Kind.NEXT, "no_active_run", Step.VERIFY),
        (OVERDUE, {}, Step.ABORT, None, Kind.NEXT, "resumed", Step.VERIFY),
        (OVERDUE, {}, Step.ABORT, "dry_run", Kind.NEXT, "would_abort", Step.VERIFY),
        (OVERDUE, {"probed": True}, Step.ABORT, "no-active-run", Kind.NEXT, "no_active_run",
         Step.RESET),
        (OVERDUE, {"probed": True}, Step.ABORT, "aborted", Kind.STOP, "aborted_live_run", None),
        (HELD, {}, Step.RESET, "reset", Kind.NEXT, "reset", Step.VERIFY),
        (ZOMBIE, {}, Step.RESET, "reset", Kind.NEXT, "reset", Step.VERIFY),
        (ZOMBIE, {}, Step.RESET, "new_sent", Kind.NEXT, "new_sent", Step.VERIFY),
        (ZOMBIE, {}, Step.RESET, "cannot_reset", Kind.NEXT, "cannot_reset", Step.VERIFY),
        (ZOMBIE, {}, Step.RESET, "session-changed", Kind.STOP, "changed", None),
        (ZOMBIE, {}, Step.RESET, None, Kind.NEXT, "resumed", Step.VERIFY),
        (ZOMBIE, {}, Step.RESET, "dry_run", Kind.NEXT, "would_reset", Step.VERIFY),
        (ZOMBIE, {}, Step.RESET, "stale_read", Kind.STOP, "stale_read", None),
    ],
)  # fmt: skip
def test_answered(
    kind: VerdictKind, attempt_kw: dict[str, object], step: Step, answer: str | None,
    expected: Kind, outcome: str, next_step: Step | None,
) -> None:  # fmt: skip
    action = next_action(attempt(kind, **attempt_kw), Answered(step, answer), POLICY, NOW)
    assert (action.kind, action.outcome, action.step) == (expected, outcome, next_step)


@pytest.mark.parametrize("step", [Step.ABORT, Step.RESET])
@pytest.mark.parametrize("answer", ["no-active-run", "aborted", "reset", "new_sent", None])
def test_a_collision_closes_unhealed_and_pages(step: Step, answer: str | None) -> None:
    action = next_action(attempt(ZOMBIE), Answered(step, answer, collided=True), POLICY, NOW)
    assert (action.kind, action.outcome, action.page, action.healed) == (
        Kind.CLOSE, "collided", "collided", False,
    )  # fmt: skip


@pytest.mark.parametrize("answer", sorted(NOT_SENT))
def test_a_resumed_not_sent_step_stops_without_touching_the_lease(answer: str) -> None:
    action = next_action(attempt(ZOMBIE), Answered(Step.RESET, answer, resumed=True), POLICY, NOW)
    assert (action.kind, action.release) == (Kind.STOP, False)


def test_a_resumed_answer_goes_on_as_the_first_delivery_would() -> None:
    action = next_action(
        attempt(ZOMBIE), Answered(Step.ABORT, "no-active-run", resumed=True), POLICY, NOW
    )
    assert (action.kind, action.outcome, action.step) == (Kind.NEXT, "resumed", Step.RESET)
    assert "already answered" in action.reason


def test_an_overdue_abort_settles_before_verify_a_zombie_abort_does_not() -> None:
    overdue = next_action(attempt(OVERDUE), Answered(Step.ABORT, "aborted"), POLICY, NOW)
    zombie = next_action(attempt(ZOMBIE), Answered(Step.ABORT, "no-active-run"), POLICY, NOW)
    assert overdue.settle and not zombie.settle
    assert dict(zombie.update) == {"after": "no-active-run"}


# -- verify ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "attempt_kw", "now", "read_kw", "expected", "outcome"),
    [
        (ZOMBIE, {}, verdict(VerdictKind.IDLE, sid="s9"), {}, Kind.CLOSE, "healed"),
        (ZOMBIE, {}, verdict(VerdictKind.LIVE, started=9.0), {}, Kind.CLOSE, "healed"),
        (ZOMBIE, {}, None, {}, Kind.CONFIRM, ""),
        (ZOMBIE, {}, None, {"absence_confirmed": True}, Kind.CLOSE, "healed"),
        (ZOMBIE, {}, verdict(VerdictKind.ZOMBIE), {}, Kind.STOP, "ineffective"),
        (ZOMBIE, {}, verdict(VerdictKind.UNKNOWN), {}, Kind.STOP, "ineffective"),
        (ZOMBIE, {"dry_run": True}, verdict(VerdictKind.ZOMBIE), {}, Kind.STOP, "unchanged"),
        (OVERDUE, {}, verdict(VerdictKind.LIVE_OVERDUE), {}, Kind.NEXT, "still_running"),
        (OVERDUE, {"probed": True}, verdict(VerdictKind.LIVE_OVERDUE), {}, Kind.STOP,
         "ineffective"),
        (OVERDUE, {}, verdict(VerdictKind.LIVE_OVERDUE, started=4.0), {}, Kind.STOP,
         "ineffective"),
    ],
)  # fmt: skip
def test_verify(
    kind: VerdictKind, attempt_kw: dict[str, object], now: Verdict | None,
    read_kw: dict[str, bool], expected: Kind, outcome: str,
) -> None:  # fmt: skip
    action = next_action(
        attempt(kind, **attempt_kw), Read(Step.VERIFY, now, **read_kw), POLICY, NOW
    )
    assert (action.kind, action.outcome) == (expected, outcome)
    if expected is Kind.CLOSE:
        assert action.healed
    if outcome == "ineffective":
        assert action.error and action.error.startswith("ineffective")


@pytest.mark.parametrize("after", ["reset", "new_sent"])
def test_a_reset_that_changed_nothing_escalates_at_once(after: str) -> None:
    action = next_action(
        attempt(ZOMBIE, after=after), Read(Step.VERIFY, verdict(VerdictKind.ZOMBIE)), POLICY, NOW
    )
    assert (action.kind, action.outcome, action.step) == (Kind.NEXT, "ineffective", Step.ESCALATE)
    assert action.error and "changed nothing" in action.error


def test_a_reset_of_a_held_lane_reports_the_messages_it_dropped() -> None:
    held = attempt(HELD, run_ids=("m1", "m2"))
    answered = Answered(Step.RESET, "reset", waiting=("m1", "m2"))
    action = next_action(held, answered, POLICY, NOW)
    assert "dropped 2 message(s)" in action.reason and "m1, m2" in action.reason
    assert action.update["dropped"] == ("m1", "m2")
    # what the step found waiting counts, whatever the row's shape (a zombie's too)
    zombie = next_action(attempt(ZOMBIE), answered, POLICY, NOW)
    assert "dropped 2 message(s)" in zombie.reason
    nothing = next_action(attempt(ZOMBIE), Answered(Step.RESET, "reset"), POLICY, NOW)
    assert "dropped" not in nothing.reason and "dropped" not in nothing.update
    refused = next_action(
        held, Answered(Step.RESET, "session-changed", waiting=("m1",)), POLICY, NOW
    )
    assert "dropped" not in refused.reason


def test_a_reset_answer_is_remembered_for_verify() -> None:
    action = next_action(attempt(ZOMBIE), Answered(Step.RESET, "reset"), POLICY, NOW)
    assert dict(action.update) == {"after": "reset"}


def test_the_probe_marks_the_attempt() -> None:
    action = next_action(
        attempt(OVERDUE), Read(Step.VERIFY, verdict(VerdictKind.LIVE_OVERDUE)), POLICY, NOW
    )
    assert action.step is Step.ABORT and dict(action.update) == {"probed": True, "after": None}


def test_steps_other_than_found_need_their_attempt() -> None:
    with pytest.raises(ValueError, match="needs the attempt"):
        next_action(None, Read(Step.VERIFY, None), POLICY, NOW)


# -- binding and budget ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "binding"),
    [
        (verdict(VerdictKind.ZOMBIE), Binding.SAME),
        (verdict(VerdictKind.IDLE, sid="new"), Binding.HEALED),
        (verdict(VerdictKind.LIVE), Binding.HEALED),
        (verdict(VerdictKind.LIVE, started=2.0), Binding.CHANGED),
        (verdict(VerdictKind.ZOMBIE, sid="new"), Binding.CHANGED),
        (verdict(VerdictKind.ZOMBIE_PENDING), Binding.CHANGED),
        (verdict(VerdictKind.HELD, runs=("m",)), Binding.CHANGED),
    ],
)
def test_compare(now: Verdict, binding: Binding) -> None:
    assert compare(verdict(VerdictKind.ZOMBIE), now) is binding


@pytest.mark.parametrize(
    ("step", "answer", "counts"),
    [
        (Step.RESET, "reset", True),
        (Step.RESET, "new_sent", True),
        (Step.RESET, "cannot_reset", False),
        (Step.RESET, "dry_run", False),
        (Step.RESET, "session-changed", False),
        (Step.ABORT, "aborted", False),
        (Step.ABORT, "no-active-run", False),
    ],
)
def test_what_spends_the_heal_budget(step: Step, answer: str, counts: bool) -> None:
    assert counts_toward_budget(step, answer) is counts


# -- held messages: report, redeliver ---------------------------------------------------------

REDELIVER = Policy(held_messages="redeliver")


def held_reset(**kw: object) -> AttemptRef:
    v = verdict(VerdictKind.HELD, runs=("m1", "m2"), overdue=True)
    ref = AttemptRef.of("gw", v, recovery_id="r1", attempt=1, lease_token=7, dry_run=False)
    return ref.model_copy(update={"after": "reset", "dropped": ("m1", "m2"), **kw})


@pytest.mark.parametrize(
    ("ref", "policy", "kind", "step", "page"),
    [
        # report (the default): closed healed, one page names the dropped messages
        (held_reset(), POLICY, Kind.CLOSE, None, "messages_dropped"),
        (held_reset(after="new_sent"), POLICY, Kind.CLOSE, None, "messages_dropped"),
        # redeliver: healed, then the redeliver step
        (held_reset(), REDELIVER, Kind.NEXT, Step.REDELIVER, None),
        # nothing of ours dropped them: no reset by us, a dry run, no held runs
        (held_reset(after=None), REDELIVER, Kind.CLOSE, None, None),
        (held_reset(dry_run=True), REDELIVER, Kind.CLOSE, None, None),
        (held_reset(dropped=()), REDELIVER, Kind.CLOSE, None, None),
        (attempt(VerdictKind.ZOMBIE, after="reset"), REDELIVER, Kind.CLOSE, None, None),
        # a zombie's reset that dropped waiting messages is treated the same
        (
            attempt(VerdictKind.ZOMBIE, after="reset", dropped=("m1",)),
            REDELIVER,
            Kind.NEXT,
            Step.REDELIVER,
            None,
        ),
    ],
)
def test_verify_healed_after_dropping_held_messages(
    ref: AttemptRef, policy: Policy, kind: Kind, step: Step | None, page: str | None
) -> None:
    action = next_action(ref, Read(Step.VERIFY, verdict(VerdictKind.IDLE)), policy, NOW)
    assert (action.kind, action.step, action.page) == (kind, step, page)


def test_a_session_gone_after_a_held_reset_cannot_be_redelivered_to_and_is_reported() -> None:
    read = Read(Step.VERIFY, None, absence_confirmed=True)
    action = next_action(held_reset(), read, REDELIVER, NOW)
    assert (action.kind, action.healed, action.page) == (Kind.CLOSE, True, "messages_dropped")


@pytest.mark.parametrize(
    ("done", "outcome", "page"),
    [
        (Redelivered(sent=2), "redelivered", None),
        (Redelivered(sent=1, too_old=1), "not_redelivered", "messages_dropped"),
        (Redelivered(unreadable=2), "not_redelivered", "messages_dropped"),
        (Redelivered(sent=1, failed=1), "not_redelivered", "messages_dropped"),
        (Redelivered(not_lost=2), "healed", None),
    ],
)
def test_redelivered(done: Redelivered, outcome: str, page: str | None) -> None:
    action = next_action(held_reset(), done, REDELIVER, NOW)
    assert (action.kind, action.outcome, action.page, action.healed) == (
        Kind.CLOSE, outcome, page, True,
    )  # fmt: skip


def test_the_held_reset_says_since_when_and_verify_keeps_it() -> None:
    ref = held_reset(after=None)
    answered = Answered(Step.RESET, "reset", waiting=("m1",), held_since_ms=NOW)
    action = next_action(ref, answered, POLICY, NOW)
    assert "waiting since 2027-01-15T08:00:00Z" in action.reason
    assert action.update["held_since_ms"] == NOW

"""The whole ladder, inline (as `heal` runs it), against the simulator and a real Redis."""

from __future__ import annotations

import threading

import pytest

from supervisor.core.ladder import Step
from supervisor.recovery.runtime import run_ladder
from supervisor.recovery.scanner import Scanner
from supervisor.recovery.steps import Steps
from supervisor.simulator import FaultMode
from tests.recovery.conftest import Rig

VERSIONS = ["2026.9.6", "2026.3.24"]


def outcomes(actions: list) -> list[tuple[str | None, str, str]]:  # type: ignore[type-arg]
    return [(a.key, a.step, a.outcome) for a in actions]


@pytest.mark.parametrize("version", VERSIONS)
def test_zombies_are_healed_and_nothing_else_is_touched(rig: Rig, version: str) -> None:
    gw = rig.gateway("gw", version)
    gw.add_zombie("agent:main:z1")
    gw.add_zombie("agent:main:z2")
    gw.add_live("agent:main:live", age_s=600)
    gw.add_idle("agent:main:done")
    actions = run_ladder(rig.engine(), "gw")
    steps = outcomes(actions)
    for key in ("agent:main:z1", "agent:main:z2"):
        assert (key, "abort", "no_active_run") in steps
        assert (key, "reset", "reset") in steps
        assert (key, "verify", "healed") in steps
        assert gw.mutation_count(key, "sessions.abort") == 1
        assert gw.mutation_count(key, "sessions.reset") == 1
        assert gw.sessions[key].status is None
    assert gw.mutation_count("agent:main:live") == 0
    assert gw.mutation_count("agent:main:done") == 0
    assert gw.sessions["agent:main:live"].live_run is not None
    # healed episodes leave nothing behind but the audit trail
    assert rig.store.episodes.open_episodes("gw") == {}
    assert rig.store.leases.holder("gw", "agent:main:z1") is None
    audit = rig.store.audit.read(100)
    assert any(r.step == "verify" and r.outcome == "healed" for r in audit)
    assert all(r.fencing_token for r in audit if r.outcome == "sending")
    # a second pass finds nothing to do
    assert [a for a in run_ladder(rig.engine(), "gw") if a.key] == []


def test_2026_9_6_reset_is_bound_to_the_session_id(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6")
    gw.add_zombie("agent:main:z")
    run_ladder(rig.engine(), "gw")
    reset = [m for m in gw.mutations if m.method == "sessions.reset"]
    assert (
        reset and reset[0].params.get("expectedSessionId") == gw.sessions["agent:main:z"].session_id
    )


def test_live_overdue_on_2026_9_6_is_aborted_once(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6")
    gw.add_live("agent:main:hung", age_s=600)
    gw.add_live("agent:research:long", age_s=600)
    actions = run_ladder(
        rig.engine('lane_timeout = "5m"\nlane_timeouts = { "agent:research:*" = "6h" }\n'), "gw"
    )
    assert ("agent:main:hung", "abort", "aborted") in outcomes(actions)
    assert ("agent:main:hung", "verify", "healed") in outcomes(actions)
    assert gw.sessions["agent:main:hung"].status == "killed"
    assert gw.mutation_count("agent:main:hung") == 1
    assert gw.mutation_count("agent:research:long") == 0  # its own, longer lane timeout


def test_live_overdue_on_2026_3_24_clears_the_stale_row_it_leaves(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.3.24")
    gw.add_live("agent:main:hung", age_s=600)
    old_sid = gw.sessions["agent:main:hung"].session_id
    actions = run_ladder(rig.engine('lane_timeout = "5m"\n'), "gw")
    assert outcomes(actions) == [
        ("agent:main:hung", "abort", "aborted"),
        ("agent:main:hung", "verify", "still_running"),
        ("agent:main:hung", "abort", "no_active_run"),
        ("agent:main:hung", "reset", "reset"),
        ("agent:main:hung", "verify", "healed"),
    ]
    assert gw.sessions["agent:main:hung"].session_id != old_sid
    assert gw.mutation_count("agent:main:hung", "sessions.abort") == 2


@pytest.mark.parametrize("version", VERSIONS)
def test_dry_run_sends_nothing_and_audits_what_it_would_do(rig: Rig, version: str) -> None:
    gw = rig.gateway("gw", version)
    gw.add_zombie("agent:main:z")
    actions = run_ladder(rig.engine(dry_run=True), "gw")
    assert ("agent:main:z", "abort", "would_abort") in outcomes(actions)
    assert ("agent:main:z", "reset", "would_reset") in outcomes(actions)
    assert gw.mutations == []
    assert (
        rig.store.attempts.get("gw", "agent:main:z", gw.sessions["agent:main:z"].session_id) is None
    )
    assert any(r.dry_run and r.outcome == "would_reset" for r in rig.store.audit.read(100))
    # per gateway too
    assert run_ladder(rig.engine("dry_run = true\n"), "gw") and gw.mutations == []


def test_unhealable_session_escalates_once_then_hands_off_until_it_heals(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6", grant_admin=False)  # reset and /new need operator.admin
    gw.add_zombie("agent:main:z")
    engine = rig.engine("max_attempts = 2\n")
    first = outcomes(run_ladder(engine, "gw"))
    assert ("agent:main:z", "reset", "cannot_reset") in first
    assert gw.mutation_count("agent:main:z", "sessions.send") == 0
    assert ("agent:main:z", "verify", "ineffective") in first
    assert ("agent:main:z", "verify", "ineffective") in outcomes(run_ladder(engine, "gw"))
    third = outcomes(run_ladder(engine, "gw"))
    assert third == [("agent:main:z", "escalate", "escalated")]
    before = len(gw.mutations)
    for _ in range(3):
        assert [a for a in run_ladder(engine, "gw") if a.key] == []  # hands off
    assert len(gw.mutations) == before
    assert rig.pager.triggers == [("gw/agent:main:z", "escalated")]
    # an operator clears it by hand: the next scan closes the episode and resolves the page
    rig.sim.call(gw._clear, gw.sessions["agent:main:z"])
    healed = outcomes(run_ladder(engine, "gw"))
    assert healed == [("agent:main:z", "scan", "healed")]
    assert rig.pager.resolves == ["gw/agent:main:z"]
    assert rig.store.episodes.open_episodes("gw") == {}


def test_backoff_waits_between_attempts(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6", grant_admin=False)
    gw.add_zombie("agent:main:z")
    engine = rig.engine('backoff_base = "1h"\nbackoff_max = "2h"\nbackoff_jitter = 0\n')
    run_ladder(engine, "gw")
    n = len(gw.mutations)
    assert [a for a in run_ladder(engine, "gw") if a.key] == []  # waiting
    assert len(gw.mutations) == n
    state = rig.store.attempts.get("gw", "agent:main:z", gw.sessions["agent:main:z"].session_id)
    assert state is not None and state.count == 1
    assert state.next_not_before_ms - state.last_attempt_ms == pytest.approx(3600_000, abs=5)


def test_a_restart_sweeps_at_once_despite_backoff(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6", grant_admin=False)
    gw.add_zombie("agent:main:z")
    engine = rig.engine('backoff_base = "1h"\n')
    run_ladder(engine, "gw")
    rig.sim.call(gw.restart)
    actions = outcomes(run_ladder(engine, "gw"))
    assert (None, "scan", "boot_sweep") in actions
    assert ("agent:main:z", "abort", "no_active_run") in actions


def test_two_workers_racing_act_once(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6")
    for i in range(4):
        gw.add_zombie(f"agent:main:z{i}")
    engines = [rig.engine() for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    results: list[list] = []  # type: ignore[type-arg]

    def work(e: object) -> None:
        barrier.wait()
        results.append(run_ladder(e, "gw"))  # type: ignore[arg-type]

    threads = [threading.Thread(target=work, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i in range(4):
        key = f"agent:main:z{i}"
        assert gw.mutation_count(key, "sessions.reset") == 1, gw.mutations
        assert gw.mutation_count(key, "sessions.abort") == 1
        assert gw.sessions[key].status is None


def test_a_redelivered_step_does_nothing(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6")
    gw.add_zombie("agent:main:z")
    engine = rig.engine()
    out = Scanner(engine).scan("gw")
    (first,) = out.starts
    steps = Steps(engine)
    a = steps.run(first.step, first.ref)
    again = steps.run(first.step, first.ref)
    # the copy does not send again; it carries on from the recorded answer
    assert (a.outcome, again.outcome) == ("no_active_run", "resumed")
    assert again.next is not None and again.next.step is Step.RESET
    assert gw.mutation_count("agent:main:z", "sessions.abort") == 1
    steps.run(again.next.step, again.next.ref)
    steps.run(again.next.step, again.next.ref)
    assert gw.mutation_count("agent:main:z", "sessions.reset") == 1


def test_a_step_whose_worker_died_after_claiming_is_not_sent_again(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6")
    gw.add_zombie("agent:main:z")
    engine = rig.engine()
    engine.claim_wait_s = 0.3
    (first,) = Scanner(engine).scan("gw").starts
    # a first delivery claimed the abort, maybe sent it, and was killed before recording
    rig.store.episodes.claim_step(first.ref.recovery_id, "abort", "dead-worker")
    result = Steps(engine).run(first.step, first.ref)
    assert result.outcome == "resumed" and "not sending it again" in result.detail
    assert gw.mutation_count("agent:main:z", "sessions.abort") == 0
    assert result.next is not None
    assert Steps(engine).run(result.next.step, result.next.ref).outcome == "reset"


def test_a_session_that_changed_after_detection_is_left_alone(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.3.24")
    gw.add_zombie("agent:main:z")
    engine = rig.engine()
    (first,) = Scanner(engine).scan("gw").starts
    # a new message arrives before the abort: on 2026.3.24 it runs at once (a new startedAt)
    rig.sim.call(
        gw.handle, "sessions.send", {"key": "agent:main:z", "message": "hi"}, ["operator.write"]
    )
    result = Steps(engine).run(first.step, first.ref)
    assert result.outcome == "changed"
    assert gw.mutation_count("agent:main:z", "sessions.abort") == 0
    assert rig.store.leases.holder("gw", "agent:main:z") is None


def test_a_lost_lease_stops_the_step(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6")
    gw.add_zombie("agent:main:z")
    engine = rig.engine()
    (first,) = Scanner(engine).scan("gw").starts
    rig.store.client.delete(rig.store.keys.lease("gw", "agent:main:z"))  # expired meanwhile
    assert Steps(engine).run(first.step, first.ref).outcome == "lease_lost"
    assert gw.mutations == []


def test_zombie_breaker_acts_on_none_and_escalates_once(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6")
    for i in range(6):
        gw.add_zombie(f"agent:main:z{i}")
    gw.add_idle("agent:main:ok")
    engine = rig.engine("zombie_breaker_min = 5\n")
    assert (None, "escalate", "breaker_open") in outcomes(run_ladder(engine, "gw"))
    run_ladder(engine, "gw")
    assert gw.mutations == []
    assert rig.pager.triggers == [("gw", "breaker_open")]


def test_unreachable_gateway_escalates_once_and_resolves(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6")
    gw.fault = FaultMode.DROP
    engine = rig.engine("unreachable_after = 2\n")
    for _ in range(4):
        run_ladder(engine, "gw")
    # a socket closed during connect is how 2026.9.6 sheds load: `overloaded`, still paged once
    assert rig.pager.triggers == [("gw", "overloaded")]
    gw.fault = FaultMode.NONE
    assert (None, "resolve", "gateway_reachable") in outcomes(run_ladder(engine, "gw"))
    assert rig.pager.resolves == ["gw"]


def test_boot_grace_leaves_a_fresh_boot_to_the_gateway(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.3.24", uptime_s=10)
    gw.add_zombie("agent:main:z")
    assert (None, "scan", "boot_grace") in outcomes(
        run_ladder(rig.engine('boot_grace = "5m"\n'), "gw")
    )
    assert gw.mutations == []


def test_steps_never_use_a_step_for_something_else() -> None:
    assert {s.value for s in Step} == {"abort", "reset", "verify", "redeliver", "escalate"}


def test_heal_reports_progress_once_per_gateway(rig: Rig) -> None:
    from supervisor.recovery.runtime import heal

    for name in ("g1", "g2", "g3"):
        rig.gateway(name).add_zombie("agent:main:z")
    done: list[str] = []
    actions = heal(rig.engine(), ["g1", "g2", "g3"], on_done=done.append)
    assert sorted(done) == ["g1", "g2", "g3"]
    assert [a.gateway for a in actions if a.outcome == "healed"] == ["g1", "g2", "g3"]


def test_3_24_without_reset_falls_back_to_new(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.3.24", grant_admin=False)  # /new works with write there
    gw.add_zombie("agent:main:z")
    old = gw.sessions["agent:main:z"].session_id
    steps = outcomes(run_ladder(rig.engine(), "gw"))
    assert ("agent:main:z", "reset", "new_sent") in steps
    assert ("agent:main:z", "verify", "healed") in steps
    assert gw.sessions["agent:main:z"].session_id != old


def held(rig: Rig) -> object:
    gw = rig.gateway("gw", "2026.9.6")
    gw.add_zombie("agent:main:z")
    gw.add_live("agent:main:live", age_s=30)
    # a user's message arrives: on 2026.9.6 it waits behind the dead lane (verdict held)
    rig.sim.call(gw.handle, "sessions.send", {"key": "agent:main:z", "message": "hello?"},
                 ["operator.write"])  # fmt: skip
    return gw


def test_a_fresh_held_message_is_left_alone(rig: Rig) -> None:
    gw = held(rig)
    assert [a for a in run_ladder(rig.engine('held_after = "10m"\n'), "gw") if a.key] == []
    assert gw.mutation_count("agent:main:z") == 1  # only the user's own send


def test_a_message_held_past_held_after_gets_the_lane_reset_without_an_abort(rig: Rig) -> None:
    gw = held(rig)
    steps = outcomes(run_ladder(rig.engine('held_after = "0s"\n'), "gw"))
    assert steps == [
        ("agent:main:z", "reset", "reset"),
        ("agent:main:z", "verify", "healed"),
    ]
    assert gw.mutation_count("agent:main:z", "sessions.abort") == 0  # the message run kept
    assert gw.mutation_count("agent:main:live") == 0

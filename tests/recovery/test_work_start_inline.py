"""The 9.x shapes healed (or escalated) by the whole ladder, inline, against the simulator and a
real Redis: 2026.9.6's tombstone (measured), openclaw #146692 (SESSION_WORK_START_CHANGED after
an abort plus a restart, cleared by a reset) and #140467 (a reset that clears nothing), the last
two built from the issues' descriptions."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.recovery.runtime import run_ladder
from supervisor.simulator import FaultMode, SimGateway
from supervisor.simulator.gateway import SimError
from tests.recovery.conftest import RecordingPager, Rig

KEY = "agent:main:victim"
ADMIN = ["operator.read", "operator.write", "operator.admin"]


def steps(actions: list[Any], key: str = KEY) -> list[tuple[str, str]]:
    return [(a.step, a.outcome) for a in actions if a.key == key]


def turn(rig: Rig, gw: SimGateway, key: str = KEY) -> str:
    """A user's message: "started", or the code of the refusal."""
    try:
        rig.sim.call(gw.handle, "sessions.send", {"key": key, "message": "hello?"}, ADMIN)
    except SimError as err:
        return err.code
    return "started"


def stuck_by_abort_and_restart(gw: SimGateway, fault: FaultMode) -> None:
    """#146692's path: a live run aborted, then the gateway restarts."""
    gw.fault = fault
    gw.add_live(KEY, age_s=600)
    gw.handle("sessions.abort", {"key": KEY}, ADMIN)
    gw.restart()


def test_a_tombstoned_session_is_reset_and_answers_again(rig: Rig) -> None:
    gw = rig.gateway("gw")
    gw.add_tombstoned(KEY)
    gw.add_idle("agent:main:done", status="failed")  # a plain failed row is left alone
    assert turn(rig, gw) == "INVALID_REQUEST"
    actions = run_ladder(rig.engine(), "gw")
    assert steps(actions) == [
        ("abort", "no_active_run"), ("reset", "reset"), ("verify", "healed"),
    ], steps(actions)  # fmt: skip
    assert gw.mutation_count("agent:main:done") == 0
    assert turn(rig, gw) == "started"
    assert rig.pager.triggers == []
    assert rig.store.episodes.open_episodes("gw") == {}


def test_a_tombstone_made_by_crashed_replays_is_healed(rig: Rig) -> None:
    gw = rig.gateway("gw")
    gw.add_live(KEY, age_s=600)
    for _ in range(4):
        gw.restart(replay="unstarted")
    assert gw.sessions[KEY].tombstoned
    actions = run_ladder(rig.engine(), "gw")
    assert ("verify", "healed") in steps(actions), steps(actions)
    assert turn(rig, gw) == "started"


def test_work_start_changed_after_an_abort_and_a_restart_is_healed_by_the_reset(rig: Rig) -> None:
    gw = rig.gateway("gw")
    stuck_by_abort_and_restart(gw, FaultMode.WORK_START_CHANGED)
    assert turn(rig, gw) == "SESSION_WORK_START_CHANGED"
    actions = run_ladder(rig.engine(), "gw")
    assert steps(actions) == [
        ("abort", "no_active_run"), ("reset", "reset"), ("verify", "healed"),
    ], steps(actions)  # fmt: skip
    assert turn(rig, gw) == "started"
    assert rig.pager.triggers == []


def test_work_start_stuck_ends_ineffective_and_escalates_once_with_the_evidence(rig: Rig) -> None:
    pager = RecordingPager()
    rig.pager = pager
    gw = rig.gateway("gw")
    stuck_by_abort_and_restart(gw, FaultMode.WORK_START_STUCK)
    engine = rig.engine()
    actions = run_ladder(engine, "gw")
    assert steps(actions) == [
        ("abort", "no_active_run"), ("reset", "reset"), ("verify", "ineffective"),
        ("escalate", "escalated"),
    ], steps(actions)  # fmt: skip
    assert [kind for _, kind in pager.triggers] == ["escalated"]
    (details,) = pager.details
    assert details["key"] == KEY and details["verdict"] == "zombie"
    assert "the reset was accepted and changed nothing" in str(details["last_error"]), details
    # hands off from now on: no reset again and again, no second page
    for _ in range(3):
        run_ladder(engine, "gw")
    assert gw.mutation_count(KEY, "sessions.reset") == 1
    assert len(pager.triggers) == 1
    assert rig.store.leases.holder("gw", KEY) is None
    assert turn(rig, gw) == "SESSION_WORK_START_CHANGED"  # still stuck: a person's job now


@pytest.mark.parametrize("fault", [FaultMode.WORK_START_CHANGED, FaultMode.WORK_START_STUCK])
def test_the_fault_is_per_gateway(rig: Rig, fault: FaultMode) -> None:
    stuck = rig.gateway("stuck")
    plain = rig.gateway("plain")
    stuck_by_abort_and_restart(stuck, fault)
    plain.add_live(KEY, age_s=600)
    plain.handle("sessions.abort", {"key": KEY}, ADMIN)
    plain.restart()
    engine = rig.engine()
    assert steps(run_ladder(engine, "plain")) == []  # killed, then restarted: nothing to do
    assert turn(rig, plain) == "started"
    healed = ("verify", "healed") in steps(run_ladder(engine, "stuck"))
    assert healed is (fault is FaultMode.WORK_START_CHANGED)

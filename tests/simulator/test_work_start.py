"""The 9.x shapes in the simulator: the tombstone 2026.9.6 leaves when its restart recovery
gives up (measured), and openclaw #146692 / #140467 (SESSION_WORK_START_CHANGED after an abort
plus a restart, with and without a reset that clears it), built from the issues' descriptions."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.simulator import SESSION_FAULTS, FaultMode, SimGateway
from supervisor.simulator.gateway import WORK_START_CHANGED_CODE, SimError
from tests.support.fixtures import TOKEN

ADMIN = ["operator.read", "operator.write", "operator.admin"]
KEY = "agent:main:victim"


def row(gw: SimGateway, key: str = KEY) -> dict[str, Any]:
    rows = gw.handle("sessions.list", {}, ADMIN)["sessions"]
    found: dict[str, Any] = next(r for r in rows if r["key"] == key)
    return found


def send(gw: SimGateway, message: str = "hello?", key: str = KEY) -> Any:
    return gw.handle("sessions.send", {"key": key, "message": message}, ADMIN)


def refusal(gw: SimGateway, key: str = KEY) -> SimError:
    with pytest.raises(SimError) as refused:
        send(gw, key=key)
    return refused.value


# -- the tombstone (measured on 2026.9.6) -----------------------------------------------------


def test_three_unstarted_replays_and_the_next_boot_tombstones_the_session() -> None:
    gw = SimGateway("gw", version="2026.9.6", token=TOKEN)
    gw.add_live(KEY)
    for _ in range(3):
        gw.restart(replay="unstarted")  # each boot's replay dies before its turn starts
        assert row(gw)["status"] == "running" and row(gw)["hasActiveRun"] is True
    gw.restart(replay="unstarted")
    r = row(gw)
    assert r["status"] == "failed" and r["restartRecoveryStatus"] == "tombstoned"
    assert r["hasActiveRun"] is False and r["activeRunIds"] == [] and r["abortedLastRun"] is False
    err = refusal(gw)
    assert err.code == "INVALID_REQUEST"
    assert "ended during restart recovery. Use /new or /reset" in err.message
    assert gw.sessions[KEY].transcript == []  # refused before it reached the session


def test_a_replay_whose_turn_started_resets_the_count() -> None:
    gw = SimGateway("gw", version="2026.9.6", token=TOKEN)
    gw.add_live(KEY)
    for replay in ("unstarted", "unstarted", "hang", "unstarted", "unstarted", "unstarted"):
        gw.restart(replay=replay)
    assert "restartRecoveryStatus" not in row(gw)
    gw.restart(replay="unstarted")
    assert row(gw)["restartRecoveryStatus"] == "tombstoned"


def test_the_tombstone_blocks_no_other_sessions_replay() -> None:
    gw = SimGateway("gw", version="2026.9.6", token=TOKEN)
    gw.add_live("agent:main:a")
    for _ in range(3):
        gw.restart(replay="unstarted")
    gw.add_live("agent:main:b")  # hung at the next crash as well
    gw.restart(replay="hang")
    assert row(gw, "agent:main:a")["restartRecoveryStatus"] == "tombstoned"
    assert row(gw, "agent:main:b")["hasActiveRun"] is True  # the next in key order replays


@pytest.mark.parametrize("how", ["reset", "/new"])
def test_a_reset_or_new_clears_the_tombstone_and_turns_run_again(how: str) -> None:
    gw = SimGateway("gw", version="2026.9.6", token=TOKEN)
    gw.add_tombstoned(KEY)
    sid = gw.sessions[KEY].session_id
    if how == "reset":
        gw.handle("sessions.reset", {"key": KEY, "expectedSessionId": sid}, ADMIN)
    else:
        send(gw, "/new")
    r = row(gw)
    assert "restartRecoveryStatus" not in r and "status" not in r and r["sessionId"] == sid
    assert send(gw)["status"] == "started" and row(gw)["status"] == "running"


def test_other_lines_never_tombstone() -> None:
    for version in ("2026.3.24", "2026.5.28", "2026.7.35"):
        gw = SimGateway("gw", version=version, token=TOKEN)
        gw.add_live(KEY)
        for _ in range(5):
            gw.restart(replay="unstarted")
        assert not gw.sessions[KEY].tombstoned, version


# -- openclaw #146692 / #140467 (from the issues' descriptions) --------------------------------


@pytest.mark.parametrize("fault", [FaultMode.WORK_START_CHANGED, FaultMode.WORK_START_STUCK])
def test_an_abort_plus_a_restart_leaves_a_running_row_whose_turns_all_fail(
    fault: FaultMode,
) -> None:
    gw = SimGateway("gw", version="2026.9.6", token=TOKEN)
    gw.fault = fault
    gw.add_live(KEY)
    gw.add_live("agent:main:untouched", hangs=False)
    answer = gw.handle("sessions.abort", {"key": KEY}, ADMIN)
    assert answer["status"] == "aborted" and row(gw)["status"] == "killed"
    gw.restart()
    r = row(gw)
    assert r["status"] == "running" and r["hasActiveRun"] is False and r["activeRunIds"] == []
    assert r["abortedLastRun"] is True
    for _ in range(3):
        err = refusal(gw)
        assert err.code == WORK_START_CHANGED_CODE and "changed while starting work" in err.message
    # a session nobody aborted is as any interrupted one: no stale claim
    assert not gw.sessions["agent:main:untouched"].stale_claim
    # only the boot after the abort: a later restart does not stick another session
    gw.restart()
    assert not gw.sessions["agent:main:untouched"].stale_claim


def test_without_the_fault_an_abort_plus_a_restart_leaves_nothing_stuck() -> None:
    gw = SimGateway("gw", version="2026.9.6", token=TOKEN)
    gw.add_live(KEY)
    gw.handle("sessions.abort", {"key": KEY}, ADMIN)
    gw.restart()
    assert row(gw)["status"] == "killed"
    assert send(gw)["status"] == "started"


@pytest.mark.parametrize("how", ["reset", "/new"])
def test_work_start_changed_is_cleared_by_a_reset_or_new(how: str) -> None:
    gw = SimGateway("gw", version="2026.9.6", token=TOKEN)
    gw.fault = FaultMode.WORK_START_CHANGED
    gw.add_stale_claim(KEY)
    if how == "reset":
        gw.handle("sessions.reset", {"key": KEY}, ADMIN)
    else:
        send(gw, "/new")
    assert "status" not in row(gw)
    assert send(gw)["status"] == "started"


def test_a_reset_between_the_abort_and_the_restart_leaves_nothing_stuck() -> None:
    # the ladder's own order on a zombie: abort, then reset; a crash after both is harmless
    gw = SimGateway("gw", version="2026.9.6", token=TOKEN)
    gw.fault = FaultMode.WORK_START_CHANGED
    gw.add_zombie(KEY)
    gw.handle("sessions.abort", {"key": KEY}, ADMIN)
    gw.handle("sessions.reset", {"key": KEY}, ADMIN)
    gw.restart()
    assert "status" not in row(gw) and not gw.sessions[KEY].stale_claim


@pytest.mark.parametrize("how", ["reset", "/new"])
def test_work_start_stuck_answers_ok_and_clears_nothing(how: str) -> None:
    gw = SimGateway("gw", version="2026.9.6", token=TOKEN)
    gw.fault = FaultMode.WORK_START_STUCK
    gw.add_stale_claim(KEY)
    gw.add_zombie("agent:main:plain")
    before = row(gw)
    if how == "reset":
        answer = gw.handle("sessions.reset", {"key": KEY}, ADMIN)
        assert answer["ok"] is True
    else:
        assert send(gw, "/new")["status"] == "started"
    assert row(gw) == before
    assert refusal(gw).code == WORK_START_CHANGED_CODE
    # a plain zombie on the same gateway is cleared as ever: the fault is the stale claim's
    gw.handle("sessions.reset", {"key": "agent:main:plain"}, ADMIN)
    assert "status" not in row(gw, "agent:main:plain")


def test_session_faults_are_not_connection_faults() -> None:
    assert {FaultMode.RESET_NOOP, FaultMode.WORK_START_CHANGED, FaultMode.WORK_START_STUCK} == (
        SESSION_FAULTS
    )

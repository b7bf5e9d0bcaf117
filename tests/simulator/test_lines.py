"""The simulator speaks every served release line (README, "Release lines"): restart
reconciliation, the forms of `activeRunIds`, runs that die inside a live process, aborts of live
runs, the parameters each line accepts, approval of a scope upgrade, `diagnostics.lanes`, and the
held messages a reset throws away. Each expectation is a measured fact of the real line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from supervisor.gateway.identity import DeviceIdentity, load_or_create_identity
from supervisor.simulator import LINES, SimGateway, SimulatorServer, Version
from supervisor.simulator.gateway import CLOSE_REASON_MAX, GLOBAL_LANES, SimError
from tests.support.fixtures import TOKEN

ALL_LINES = [v.value for v in Version]
ALL_OPERATOR = ["operator.read", "operator.write", "operator.admin"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def gateway(version: str, **kw: Any) -> tuple[SimGateway, Clock]:
    clock = Clock()
    return SimGateway("gw", version=version, token=TOKEN, clock=clock, **kw), clock


def row(gw: SimGateway, key: str) -> dict[str, Any]:
    rows = gw.handle("sessions.list", {}, ["operator.read"])["sessions"]
    found: dict[str, Any] = next(r for r in rows if r["key"] == key)
    return found


# -- restart ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2026.5.28", "2026.7.35"])
def test_reconciling_lines_mark_interrupted_rows_failed_after_the_restart(version: str) -> None:
    gw, clock = gateway(version, reconcile_delay_s=6.5)
    gw.add_live("agent:main:interrupted")
    gw.add_live("agent:main:died-earlier")
    if version == "2026.5.28":
        gw.die_in_process("agent:main:died-earlier")
    gw.restart()
    # until the gateway gets to it, the interrupted row looks like a zombie
    first = row(gw, "agent:main:interrupted")
    assert first["status"] == "running" and first["hasActiveRun"] is False
    clock.now += 6.4
    assert row(gw, "agent:main:interrupted")["status"] == "running"
    clock.now += 0.2
    done = row(gw, "agent:main:interrupted")
    assert done["status"] == "failed" and done["abortedLastRun"] is True
    assert done["endedAt"] >= gw.boot_ms
    if version == "2026.5.28":
        # a run that died inside the old process held no transcript lock: never reconciled
        clock.now += 3600
        assert row(gw, "agent:main:died-earlier")["status"] == "running"


@pytest.mark.parametrize("version", ["2026.3.24", "2026.9.6"])
def test_the_other_lines_keep_interrupted_rows_running(version: str) -> None:
    gw, clock = gateway(version)
    gw.add_live("agent:main:interrupted")
    gw.restart()
    clock.now += 3600
    kept = row(gw, "agent:main:interrupted")
    assert kept["status"] == "running"
    assert kept["abortedLastRun"] is (version == "2026.9.6")


# -- row shapes --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_LINES)
def test_active_run_ids_take_each_lines_form(version: str) -> None:
    gw, _ = gateway(version)
    live = gw.add_live("agent:main:live")
    gw.add_idle("agent:main:idle")
    live_row, idle_row = row(gw, "agent:main:live"), row(gw, "agent:main:idle")
    if version == "2026.3.24":
        assert "hasActiveRun" not in live_row and "activeRunIds" not in live_row
        return
    assert live_row["hasActiveRun"] is True and idle_row["hasActiveRun"] is False
    if version == "2026.7.35":
        assert live_row["activeRunIds"] == [live.live_run]
    else:
        assert "activeRunIds" not in live_row  # null: a live owner whose run ids are unknown
    if version == "2026.9.6":
        assert idle_row["activeRunIds"] == []
    else:
        assert "activeRunIds" not in idle_row


@pytest.mark.parametrize(
    ("version", "status", "active"),
    [("2026.5.28", "running", False), ("2026.7.35", "timeout", False)],
)
def test_a_run_that_dies_inside_a_live_process(version: str, status: str, active: bool) -> None:
    gw, _ = gateway(version)
    gw.add_live("agent:main:dead")
    gw.die_in_process("agent:main:dead")
    dead = row(gw, "agent:main:dead")
    assert dead["status"] == status and dead["hasActiveRun"] is active
    assert "activeRunIds" not in dead


@pytest.mark.parametrize(
    ("version", "after"),
    [("2026.3.24", "running"), ("2026.5.28", "timeout"), ("2026.7.35", "killed"),
     ("2026.9.6", "killed")],
)  # fmt: skip
def test_an_abort_of_a_live_run_leaves_each_lines_status(version: str, after: str) -> None:
    gw, _ = gateway(version)
    gw.add_live("agent:main:live")
    answer = gw.handle("sessions.abort", {"key": "agent:main:live"}, ALL_OPERATOR)
    assert answer["status"] == "aborted"
    assert row(gw, "agent:main:live")["status"] == after


@pytest.mark.parametrize("version", ALL_LINES)
def test_reset_takes_expected_session_id_only_where_the_line_does(version: str) -> None:
    gw, _ = gateway(version)
    zombie = gw.add_zombie("agent:main:z")
    params = {"key": zombie.key, "expectedSessionId": zombie.session_id}
    if version == "2026.9.6":
        gw.handle("sessions.reset", params, ALL_OPERATOR)
    else:
        with pytest.raises(SimError, match="unexpected property 'expectedSessionId'"):
            gw.handle("sessions.reset", params, ALL_OPERATOR)
        assert row(gw, zombie.key)["status"] == "running"  # refused before touching anything
        gw.handle("sessions.reset", {"key": zombie.key}, ALL_OPERATOR)
    assert "status" not in row(gw, zombie.key)


@pytest.mark.parametrize("version", ALL_LINES)
def test_each_line_lists_the_methods_it_has(version: str) -> None:
    methods = SimGateway("gw", version=version).hello(4, [])["features"]["methods"]
    assert ("diagnostics.lanes" in methods) == (version == "2026.9.6")
    assert ("device.pair.approve" in methods) == (version != "2026.3.24")
    assert LINES[Version(version)].methods() == methods


# -- held messages and lanes (2026.9.6) --------------------------------------------------------


def test_a_reset_throws_away_the_message_held_behind_a_dead_lane_on_2026_9_6() -> None:
    gw, _ = gateway("2026.9.6")
    gw.add_zombie("agent:main:z")
    run = gw.handle("sessions.send", {"key": "agent:main:z", "message": "hello?"}, ALL_OPERATOR)
    held = row(gw, "agent:main:z")
    assert held["hasActiveRun"] is True and held["activeRunIds"] == [run["runId"]]
    gw.handle("sessions.reset", {"key": "agent:main:z"}, ALL_OPERATOR)
    assert [(d.key, d.run_id, d.text) for d in gw.dropped_messages] == [
        ("agent:main:z", run["runId"], "hello?")
    ]
    cleared = row(gw, "agent:main:z")
    assert "status" not in cleared and cleared["activeRunIds"] == []
    gw.handle("sessions.send", {"key": "agent:main:z", "message": "again"}, ALL_OPERATOR)
    assert row(gw, "agent:main:z")["status"] == "running"  # only a later message runs


@pytest.mark.parametrize("version", ["2026.3.24", "2026.5.28", "2026.7.35"])
def test_elsewhere_a_message_to_a_zombie_runs_and_nothing_is_dropped(version: str) -> None:
    gw, _ = gateway(version)
    gw.add_zombie("agent:main:z")
    gw.handle("sessions.send", {"key": "agent:main:z", "message": "hello?"}, ALL_OPERATOR)
    gw.handle("sessions.reset", {"key": "agent:main:z"}, ALL_OPERATOR)
    assert gw.dropped_messages == []


def test_diagnostics_lanes_counts_per_gateway_on_2026_9_6() -> None:
    gw, _ = gateway("2026.9.6")
    empty = gw.handle("diagnostics.lanes", {}, ["operator.read"])
    assert [lane["lane"] for lane in empty["lanes"]] == list(GLOBAL_LANES)
    assert empty["dynamic"] is None
    for lane in empty["lanes"]:
        assert set(lane) == {
            "lane", "activeCount", "queuedCount", "maxConcurrent", "draining", "generation",
            "blockedBy",
        }  # fmt: skip
    gw.add_live("agent:main:a")
    gw.add_live("agent:main:b")
    gw.add_zombie("agent:main:z")
    gw.handle("sessions.send", {"key": "agent:main:z", "message": "hello?"}, ALL_OPERATOR)
    busy = gw.handle("diagnostics.lanes", {}, ["operator.read"])
    main = next(lane for lane in busy["lanes"] if lane["lane"] == "main")
    assert main["activeCount"] == 2
    assert busy["dynamic"] == {
        "laneCount": 3, "activeCount": 2, "queuedCount": 1, "queuedLaneCount": 1,
    }  # fmt: skip
    assert "agent:main" not in json.dumps(busy)  # no session keys: counts only


@pytest.mark.parametrize("version", ["2026.3.24", "2026.5.28", "2026.7.35"])
def test_diagnostics_lanes_is_unknown_elsewhere(version: str) -> None:
    gw, _ = gateway(version)
    with pytest.raises(SimError, match=r"unknown method: diagnostics\.lanes"):
        gw.handle("diagnostics.lanes", {}, ALL_OPERATOR)


# -- approval of a scope upgrade, over the wire ------------------------------------------------


def connect_frame(
    nonce: str, device: DeviceIdentity, scopes: list[str], client: tuple[str, str]
) -> str:
    proof = device.proof(
        client_id=client[0], client_mode=client[1], role="operator", scopes=tuple(scopes),
        token=TOKEN, nonce=nonce, signed_at_ms=int(time.time() * 1000),
    )  # fmt: skip
    params = {
        "minProtocol": 3, "maxProtocol": 4, "role": "operator", "scopes": scopes,
        "client": {"id": client[0], "version": "t", "platform": "linux", "mode": client[1]},
        "auth": {"token": TOKEN}, "device": proof,
    }  # fmt: skip
    return json.dumps({"type": "req", "id": "c1", "method": "connect", "params": params})


async def raw_connect(
    url: str, device: DeviceIdentity, scopes: list[str], client: tuple[str, str] = ("cli", "cli")
) -> dict[str, Any]:
    """One connect with a device proof; the answer frame, plus the close if it was refused."""
    async with connect(url) as ws:
        nonce = json.loads(await ws.recv())["payload"]["nonce"]
        await ws.send(connect_frame(nonce, device, scopes, client))
        answer: dict[str, Any] = json.loads(await ws.recv())
        if not answer["ok"]:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            answer["close"] = (closed.value.rcvd.code, closed.value.rcvd.reason)
        return answer


async def call(url: str, device: DeviceIdentity, scopes: list[str], method: str, **p: Any) -> Any:
    """Connect as a cli/cli device and make one request; its answer frame."""
    async with connect(url) as ws:
        nonce = json.loads(await ws.recv())["payload"]["nonce"]
        await ws.send(connect_frame(nonce, device, scopes, ("cli", "cli")))
        assert json.loads(await ws.recv())["ok"] is True
        await ws.send(json.dumps({"type": "req", "id": "r1", "method": method, "params": p}))
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("id") == "r1":
                return frame


@pytest.mark.parametrize("version", ["2026.5.28", "2026.7.35"])
async def test_a_scope_upgrade_waits_for_approval_and_is_approved_by_a_pairing_operator(
    sim: SimulatorServer, tmp_path: Path, version: str
) -> None:
    sim.add(SimGateway("gw", version=version, token=TOKEN))
    url = sim.url("gw")
    device = load_or_create_identity(tmp_path / "device")
    first = await raw_connect(url, device, ["operator.read"])
    assert first["ok"] is True and first["payload"]["auth"]["scopes"] == ["operator.read"]

    refused = await raw_connect(url, device, ALL_OPERATOR)
    assert refused["ok"] is False
    error = refused["error"]
    assert error["code"] == "NOT_PAIRED"
    assert error["message"] == (
        "pairing required: device is asking for more scopes than currently approved"
    )
    details = error["details"]
    assert details["code"] == "PAIRING_REQUIRED" and details["reason"] == "scope-upgrade"
    assert details["approvedScopes"] == ["operator.read"]
    assert details["requestedScopes"] == ALL_OPERATOR
    request_id = details["requestId"]
    code, reason = refused["close"]
    assert code == 1008 and len(reason.encode()) <= CLOSE_REASON_MAX
    assert reason.startswith(f"{error['message']} (requestId: {request_id[:8]}")

    # a retry while the request is pending reuses it (measured): no flood of requests
    again = await raw_connect(url, device, ALL_OPERATOR)
    assert again["error"]["details"]["requestId"] == request_id

    pairing = load_or_create_identity(tmp_path / "pairing-operator")
    owner_scopes = ["operator.admin", "operator.pairing", "operator.read", "operator.write"]
    listed = await call(url, pairing, owner_scopes, "device.pair.list")
    assert [p["requestId"] for p in listed["payload"]["pending"]] == [request_id]
    no_pairing = await call(url, device, ["operator.read"], "device.pair.list")
    assert no_pairing["ok"] is False and "missing scope" in no_pairing["error"]["message"]
    approved = await call(url, pairing, owner_scopes, "device.pair.approve", requestId=request_id)
    assert approved["ok"] is True and approved["payload"]["device"]["scopes"] == ALL_OPERATOR

    now = await raw_connect(url, device, ALL_OPERATOR)
    assert now["ok"] is True and now["payload"]["auth"]["scopes"] == ALL_OPERATOR
    again_approved = await call(
        url, pairing, owner_scopes, "device.pair.approve", requestId=request_id
    )
    assert (
        again_approved["ok"] is False and "unknown requestId" in again_approved["error"]["message"]
    )


@pytest.mark.parametrize(
    ("version", "silent", "pending"),
    [("2026.5.28", True, False), ("2026.5.28", False, True), ("2026.9.6", False, False),
     ("2026.3.24", False, False)],
)  # fmt: skip
async def test_who_waits_for_a_scope_upgrade(
    sim: SimulatorServer, tmp_path: Path, version: str, silent: bool, pending: bool
) -> None:
    """A gateway-client/backend device on loopback is upgraded without asking (measured on
    2026.5.28 and 2026.7.35); 2026.9.6 and 2026.3.24 never ask."""
    gw = sim.add(SimGateway("gw", version=version, token=TOKEN, silent_backend_upgrade=silent))
    device = load_or_create_identity(tmp_path / "device")
    backend = ("gateway-client", "backend")
    assert (await raw_connect(sim.url("gw"), device, ["operator.read"], backend))["ok"]
    upgraded = await raw_connect(sim.url("gw"), device, ALL_OPERATOR, backend)
    assert upgraded["ok"] is not pending
    assert bool(gw.pending_pairings) is pending

"""The scan reads `diagnostics.lanes` once where the gateway has it, and says how many messages
wait behind held and zombie lanes; where nothing tells, `None` (unknown), never 0. A failing
lanes call makes the counts unknown and never fails the scan. Real sockets, simulated gateways."""

from __future__ import annotations

import time
from typing import Any

from supervisor.gateway.identity import DeviceIdentity
from supervisor.scan import look
from supervisor.simulator import SimGateway, SimulatorServer
from supervisor.simulator.gateway import SimError
from tests.support.fixtures import TOKEN, spec_for

ALL = ["operator.read", "operator.write", "operator.admin"]


def fleet_96(sim: SimulatorServer) -> SimGateway:
    gw = sim.add(SimGateway("gw", version="2026.9.6", token=TOKEN))
    gw.add_zombie("agent:dev:held-2")
    gw.add_zombie("agent:dev:held-1")
    gw.add_zombie("agent:dev:zombie")
    gw.add_live("agent:dev:live", age_s=30)
    gw.add_idle("agent:dev:idle")
    for key, n in (("agent:dev:held-2", 2), ("agent:dev:held-1", 1)):
        for i in range(n):
            gw.handle("sessions.send", {"key": key, "message": f"hello {i}"}, ALL)
    return gw


async def test_9_6_counts_per_session_and_per_gateway(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    gw = fleet_96(sim)
    report, scan = await look(spec_for(sim.url("gw"), stale_after="1m"), identity)
    assert scan is not None and report.error is None
    by_key = {s.key: s for s in report.sessions}
    assert {k: (s.verdict, s.waiting) for k, s in by_key.items()} == {
        "agent:dev:held-2": ("held", 2),
        "agent:dev:held-1": ("held", 1),
        "agent:dev:zombie": ("zombie", 0),  # activeRunIds [] proves nothing waits
        "agent:dev:live": ("live", None),
        "agent:dev:idle": ("idle", None),
    }
    assert report.messages_waiting == 3
    assert report.lanes is not None
    assert report.lanes["session_queued"] == 3
    assert report.lanes["queued_session_lanes"] == 2
    assert report.lanes["session_active"] == 1
    assert report.lanes["session_lanes"] == 3
    assert report.lanes["named_active"] == 1  # the live run counts in `main`
    assert report.lanes_error is None
    assert gw.calls.count("diagnostics.lanes") == 1  # once per scan
    assert report.capabilities is not None and report.capabilities["diagnostics_lanes"] == "yes"


async def test_9_6_with_nothing_held_knows_zero(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    gw = sim.add(SimGateway("gw", version="2026.9.6", token=TOKEN))
    gw.add_idle("agent:dev:idle")
    report, _ = await look(spec_for(sim.url("gw")), identity)
    assert report.messages_waiting == 0
    assert report.lanes is not None and report.lanes["session_queued"] == 0  # dynamic null


def fail_lanes(gw: SimGateway, how: Any) -> None:
    real = gw.handle

    def handle(method: str, params: dict[str, Any], scopes: list[str]) -> Any:
        if method == "diagnostics.lanes":
            return how(real, method, params, scopes)
        return real(method, params, scopes)

    gw.handle = handle  # type: ignore[method-assign]


async def test_a_refused_lanes_call_makes_the_counts_unknown_and_the_scan_succeeds(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    gw = fleet_96(sim)

    def refuse(*_: Any) -> Any:
        raise SimError("UNAVAILABLE", "diagnostics busy")

    fail_lanes(gw, refuse)
    report, scan = await look(spec_for(sim.url("gw"), stale_after="1m"), identity)
    assert scan is not None and report.error is None and report.reachable
    assert report.lanes is None
    assert report.lanes_error is not None and "diagnostics busy" in report.lanes_error
    assert len(report.sessions) == 5
    # the rows still say what waits behind each lane
    assert report.messages_waiting == 3


async def test_an_unreadable_lanes_answer_is_unknown(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    gw = fleet_96(sim)
    fail_lanes(gw, lambda *_: {"lanes": [{"lane": "main", "queuedCount": -4}], "dynamic": None})
    report, scan = await look(spec_for(sim.url("gw")), identity)
    assert scan is not None and report.error is None
    assert report.lanes is None and "unreadable" in (report.lanes_error or "")


async def test_a_lanes_call_that_never_answers_is_bounded_by_call_timeout(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    gw = fleet_96(sim)
    real = gw.handle

    def handle(method: str, params: dict[str, Any], scopes: list[str]) -> Any:
        out = real(method, params, scopes)
        if method == "sessions.list":
            # every later answer (the lanes call) comes well after call_timeout; the server's
            # stop waits it out, so it is kept short
            gw.delay_s = 2.0
        return out

    gw.handle = handle  # type: ignore[method-assign]
    started = time.monotonic()
    report, scan = await look(spec_for(sim.url("gw"), call_timeout="300ms"), identity)
    elapsed = time.monotonic() - started
    assert scan is not None and report.error is None
    assert report.lanes is None and (report.lanes_error or "").startswith("timeout")
    assert elapsed < 1.5, elapsed
    assert len(report.sessions) == 5


async def test_3_24_has_no_lanes_and_its_waiting_is_unknown(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    gw = sim.add(SimGateway("gw", version="2026.3.24", token=TOKEN))
    gw.add_zombie("agent:dev:zombie")
    gw.add_live("agent:dev:live", age_s=30)
    report, scan = await look(spec_for(sim.url("gw"), stale_after="1m"), identity)
    assert scan is not None and report.error is None
    assert {s.key: (s.verdict, s.waiting) for s in report.sessions} == {
        "agent:dev:zombie": ("zombie", None),
        "agent:dev:live": ("live", None),
    }
    assert report.messages_waiting is None
    assert report.lanes is None and report.lanes_error is None
    assert "diagnostics.lanes" not in gw.calls


async def test_5_28_zombie_waiting_is_unknown(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    gw = sim.add(SimGateway("gw", version="2026.5.28", token=TOKEN))
    gw.add_live("agent:dev:died", age_s=120)
    gw.die_in_process("agent:dev:died")  # a zombie inside a live process, no activeRunIds
    report, _ = await look(spec_for(sim.url("gw"), stale_after="0s"), identity)
    (row,) = report.sessions
    assert row.verdict == "zombie" and row.waiting is None
    assert report.messages_waiting is None and report.lanes is None


async def test_no_zombie_on_a_line_whose_rows_do_not_count_is_still_unknown(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    for version in ("2026.3.24", "2026.5.28", "2026.7.35"):
        name = f"gw-{version}"
        gw = sim.add(SimGateway(name, version=version, token=TOKEN))
        gw.add_idle("agent:dev:idle")
        gw.add_live("agent:dev:live", age_s=30)
        report, _ = await look(spec_for(sim.url(name), name=name), identity)
        assert report.error is None
        # nothing is held or a zombie, but these rows could not say so: unknown, not 0
        assert report.messages_waiting is None, version

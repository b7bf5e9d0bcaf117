"""The messages-waiting gauges (`supervisor.metrics`): per gateway only, from real scans of
simulated gateways; NaN or absent where nothing is known, never a guessed 0."""

from __future__ import annotations

import math
import uuid

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from supervisor import metrics
from supervisor.gateway.identity import DeviceIdentity
from supervisor.scan import GatewayReport, look
from supervisor.simulator import SimGateway, SimulatorServer
from supervisor.simulator.gateway import SimError
from tests.support.fixtures import TOKEN, spec_for

ALL = ["operator.read", "operator.write", "operator.admin"]
WAITING = "lane_supervisor_messages_waiting"
QUEUED = "lane_supervisor_lane_queued_messages"


def value(name: str, gateway: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"gateway": gateway})


async def scan(sim: SimulatorServer, identity: DeviceIdentity, name: str) -> GatewayReport:
    report, _ = await look(spec_for(sim.url(name), name=name, stale_after="0s"), identity)
    metrics.scanned(report)
    return report


def held_gateway(sim: SimulatorServer, name: str) -> SimGateway:
    gw = sim.add(SimGateway(name, version="2026.9.6", token=TOKEN))
    gw.add_zombie("agent:dev:held")
    gw.add_zombie("agent:dev:zombie")
    for text in ("one", "two", "three"):
        gw.handle("sessions.send", {"key": "agent:dev:held", "message": text}, ALL)
    return gw


async def test_9_6_exports_the_counts_3_24_exports_unknown(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    new, old = f"m-new-{uuid.uuid4().hex[:6]}", f"m-old-{uuid.uuid4().hex[:6]}"
    held_gateway(sim, new)
    sim.add(SimGateway(old, version="2026.3.24", token=TOKEN)).add_zombie("agent:dev:zombie")
    await scan(sim, identity, new)
    await scan(sim, identity, old)
    assert value(WAITING, new) == 3
    assert value(QUEUED, new) == 3
    old_waiting = value(WAITING, old)
    assert old_waiting is not None and math.isnan(old_waiting)  # unknown, not 0
    assert value(QUEUED, old) is None  # no diagnostics.lanes: absent


async def test_a_failed_lanes_call_is_nan_and_a_failed_scan_makes_both_unknown(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    name = f"m-fail-{uuid.uuid4().hex[:6]}"
    gw = held_gateway(sim, name)
    await scan(sim, identity, name)
    assert value(QUEUED, name) == 3
    real = gw.handle

    def refuse_lanes(method: str, params: dict[str, object], scopes: list[str]) -> object:
        if method == "diagnostics.lanes":
            raise SimError("UNAVAILABLE", "busy")
        return real(method, params, scopes)

    gw.handle = refuse_lanes  # type: ignore[method-assign,assignment]
    await scan(sim, identity, name)
    queued = value(QUEUED, name)
    assert queued is not None and math.isnan(queued)
    assert value(WAITING, name) == 3  # the rows still say it
    metrics.scanned(
        GatewayReport(name=name, url="ws://x", reachable=False, error="down", error_kind="timeout")
    )
    for series in (WAITING, QUEUED):
        got = value(series, name)
        assert got is not None and math.isnan(got), series


async def test_the_gauges_carry_the_gateway_label_only(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    name = f"m-labels-{uuid.uuid4().hex[:6]}"
    gw = held_gateway(sim, name)
    await scan(sim, identity, name)
    text = generate_latest(REGISTRY).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    run_ids = {r for s in gw.sessions.values() for r in s.held_runs}
    assert run_ids
    for series in (WAITING, QUEUED):
        samples = families[series].samples
        assert samples
        for sample in samples:
            assert set(sample.labels) == {"gateway"}
            assert not any("agent:" in v or v in run_ids for v in sample.labels.values())

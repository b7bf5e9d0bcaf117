"""`look` types its report rows in one validation call: the rows `SessionReport.of` makes."""

from __future__ import annotations

from supervisor.gateway.identity import DeviceIdentity
from supervisor.scan import SessionReport, look
from supervisor.simulator import SimGateway, SimulatorServer
from tests.support.fixtures import TOKEN, spec_for


async def test_the_report_rows_are_the_verdicts_as_session_reports(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    gw = sim.add(SimGateway("gw", version="2026.9.6", token=TOKEN))
    gw.add_zombie("agent:dev:zombie")
    gw.add_live("agent:dev:live", age_s=600)
    gw.add_idle("agent:dev:idle")
    report, scan = await look(spec_for(sim.url("gw"), stale_after="1m"), identity)
    assert scan is not None and report.error is None
    assert report.sessions == [SessionReport.of(v) for v in scan.verdicts]
    assert {s.verdict for s in report.sessions} == {"zombie", "live", "idle"}
    assert report.needs_action
    assert all(type(s) is SessionReport for s in report.sessions)

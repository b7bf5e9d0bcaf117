"""A scope upgrade waiting for approval (2026.5.28) is one clear state, not a retry storm."""

from __future__ import annotations

from pathlib import Path

from supervisor.gateway.client import GatewayClient
from supervisor.gateway.identity import load_or_create_identity
from supervisor.gateway.models import ALL_SCOPES, READ_SCOPE
from supervisor.scan import look
from supervisor.simulator import SimGateway, SimulatorServer
from tests.support.fixtures import TOKEN, spec_for


async def test_a_pending_scope_upgrade_is_approval_pending_with_the_command(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    gw = sim.add(SimGateway("gw", version="2026.5.28", token=TOKEN, silent_backend_upgrade=False))
    device = load_or_create_identity(tmp_path / "device")
    spec = spec_for(sim.url("gw"))
    # paired once with read only (an older supervisor, or a smaller `scopes` setting)
    async with GatewayClient(spec, device, scopes=(READ_SCOPE,)) as client:
        assert client.hello is not None and client.hello.scopes == (READ_SCOPE,)
    reports = [(await look(spec, device))[0] for _ in range(3)]
    assert {r.error_kind for r in reports} == {"approval_pending"}
    (request_id,) = gw.pending_pairings  # three scans, one request: no flood of the owner's list
    for report in reports:
        assert report.error is not None
        assert f"openclaw devices approve {request_id}" in report.error
        assert "device.pair.approve" in report.error
        assert ",".join(ALL_SCOPES) in report.error
        assert TOKEN not in report.error


async def test_an_unpaired_device_stays_not_paired(sim: SimulatorServer, tmp_path: Path) -> None:
    sim.add(SimGateway("gw", version="2026.3.24", token=TOKEN, auto_approve_devices=False))
    report, _ = await look(spec_for(sim.url("gw")), load_or_create_identity(tmp_path / "d"))
    assert report.error_kind == "not_paired"

"""`check --json` and `check` report each gateway's capabilities and the messages waiting behind
held and zombie lanes: a real CLI process against a simulated fleet mixing every served line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.simulator import SimGateway, SimulatorServer, Version
from supervisor.simulator.demo import DEMO_TOKEN, write_fleet
from tests.test_cli_check import run_cli

ALL = ["operator.read", "operator.write", "operator.admin"]
NAMES = ("has_active_run", "active_run_ids_live", "active_run_ids_idle", "restart_reconciles",
         "diagnostics_lanes", "sessions_describe", "sessions_get", "abort_by_run_id",
         "reset_expected_session_id", "counts_waiting")  # fmt: skip
EXPECTED = {
    "2026.3.24": "no no no no no no no no no no",
    "2026.5.28": "yes no no yes no yes no yes no no",
    "2026.7.35": "yes yes no yes no yes no yes no no",
    "2026.9.6": "yes no yes no yes yes no yes yes yes",  # sessions.get is not advertised
}


@pytest.fixture
def mixed() -> Iterator[SimulatorServer]:
    server = SimulatorServer()
    for version in Version:
        gw = server.add(SimGateway(f"gw-{version.value}", version=version, token=DEMO_TOKEN))
        gw.add_zombie("agent:dev:zombie")
        gw.add_live("agent:dev:live", age_s=60)
        gw.add_idle("agent:dev:idle")
        if version is Version.V2026_9_6:
            gw.add_zombie("agent:dev:held")
            for text in ("one", "two"):
                gw.handle("sessions.send", {"key": "agent:dev:held", "message": text}, ALL)
    with server.running():
        yield server


def test_check_json_reports_each_gateways_capabilities(
    mixed: SimulatorServer, tmp_path: Path
) -> None:
    fleet = write_fleet(mixed, tmp_path, stale_after="0s")
    proc = run_cli("check", "--fleet", str(fleet), "--json", state=tmp_path / "s")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    seen = set()
    for g in doc["gateways"]:
        version = g["server_version"]
        seen.add(version)
        caps = g["capabilities"]
        assert " ".join(caps[n] for n in NAMES) == EXPECTED[version], (version, caps)
        assert caps["line"] == version and caps["notes"] == []
        waiting = {s["key"]: s["waiting"] for s in g["sessions"]}
        if version == "2026.9.6":
            assert waiting["agent:dev:held"] == 2 and waiting["agent:dev:zombie"] == 0
            assert g["messages_waiting"] == 2
            assert g["lanes"]["session_queued"] == 2 and g["lanes_error"] is None
        else:
            assert g["messages_waiting"] is None and g["lanes"] is None
            assert waiting["agent:dev:zombie"] is None
    assert seen == {v.value for v in Version}
    for gw in mixed.gateways.values():
        # check sends nothing: the only mutations are the two sends that set up the held lane
        assert [m.method for m in gw.mutations] == ["sessions.send"] * (
            2 * (gw.version is Version.V2026_9_6)
        )
        assert set(gw.calls) - {"sessions.send"} <= {"sessions.list", "diagnostics.lanes"}
        assert gw.calls.count("diagnostics.lanes") == (gw.version is Version.V2026_9_6)


def test_human_check_shows_capabilities_and_messages_waiting(
    mixed: SimulatorServer, tmp_path: Path
) -> None:
    fleet = write_fleet(mixed, tmp_path, stale_after="0s")
    proc = run_cli("check", "--fleet", str(fleet), state=tmp_path / "s", env={"COLUMNS": "400"})
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout
    assert "gw-2026.9.6 (2026.9.6): hasActiveRun yes" in out
    assert "reset(expectedSessionId) yes" in out
    assert "gw-2026.3.24 (2026.3.24): hasActiveRun no" in out
    assert "lanes: 2 queued on 1 session lane(s)" in out
    assert "2 messages waiting" in out and "0 messages waiting" in out
    assert "messages waiting: unknown" in out

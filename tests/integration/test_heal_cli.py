"""`lane-supervisor heal` as a user runs it: a real process, the simulator, the embedded Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.simulator import SimGateway, SimulatorServer, Version
from supervisor.simulator.demo import DEMO_TOKEN, write_fleet
from tests.support.procs import base_env

pytestmark = pytest.mark.integration


def heal(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", "heal", *args],
        env=base_env(SUPERVISOR_STATE_DIR=str(state), SUPERVISOR_VERIFY_DELAY_S="0"),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def sim(threaded_sim: SimulatorServer) -> SimulatorServer:
    for name, version in (("new", Version.V2026_9_6), ("old", Version.V2026_3_24)):
        gw = threaded_sim.add(SimGateway(name, version=version, token=DEMO_TOKEN))
        gw.add_zombie("agent:main:zombie")
        gw.add_live("agent:main:hung", age_s=1200)
        gw.add_idle("agent:main:done")
    return threaded_sim


def test_heal_json_clears_zombies_only(sim: SimulatorServer, tmp_path: Path) -> None:
    fleet = write_fleet(sim, tmp_path, stale_after="0s", extra='lane_timeout = "1h"')
    proc = heal("--fleet", str(fleet), "--json", state=tmp_path / "state")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    done = {(a["gateway"], a["key"], a["step"], a["outcome"]) for a in doc["actions"]}
    for gw in ("new", "old"):
        assert (gw, "agent:main:zombie", "verify", "healed") in done
        assert sim.gateways[gw].mutation_count("agent:main:hung") == 0
        assert sim.gateways[gw].mutation_count("agent:main:done") == 0
    after = {(g["name"], s["key"]): s["verdict"] for g in doc["gateways"] for s in g["sessions"]}
    assert after[("new", "agent:main:zombie")] == "idle"
    assert after[("old", "agent:main:zombie")] == "idle"
    assert after[("new", "agent:main:hung")] == "live"


def test_heal_with_a_short_lane_timeout_aborts_hung_runs_too(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    fleet = write_fleet(sim, tmp_path, stale_after="0s", extra='lane_timeout = "10s"')
    proc = heal("--fleet", str(fleet), "--json", state=tmp_path / "state")
    assert proc.returncode == 0, proc.stderr
    for gw in sim.gateways.values():
        assert gw.sessions["agent:main:hung"].live_run is None
        assert gw.sessions["agent:main:hung"].status != "running"


def test_heal_dry_run_sends_nothing_and_exits_1(sim: SimulatorServer, tmp_path: Path) -> None:
    fleet = write_fleet(sim, tmp_path, stale_after="0s")
    proc = heal("--fleet", str(fleet), "--dry-run", "--json", state=tmp_path / "state")
    assert proc.returncode == 1, proc.stderr
    outcomes = {a["outcome"] for a in json.loads(proc.stdout)["actions"]}
    assert {"would_abort", "would_reset"} <= outcomes
    assert all(gw.mutations == [] for gw in sim.gateways.values())


def test_heal_with_a_broken_fleet_file_exits_64(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.toml"
    bad.write_text('[[gateways]]\nname = "x"\nurl = "http://nope"\ntoken_env = "T"\n')
    proc = heal("--fleet", str(bad), state=tmp_path / "state")
    assert proc.returncode == 64
    assert proc.stderr.count("\n") == 1 and "gateway 'x'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_heal_reports_an_unreachable_gateway_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("x")
    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[[gateways]]\nname = "gone"\nurl = "ws://127.0.0.1:9"\ntoken_file = "t"\n')
    proc = heal("--fleet", str(fleet), "--json", state=tmp_path / "state")
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["gateways"][0]["error_kind"] == "unreachable"


def run_cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        env=base_env(SUPERVISOR_STATE_DIR=str(state), SUPERVISOR_VERIFY_DELAY_S="0"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_recover_one_session_then_status_shows_the_scan(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    sim.gateways["new"].add_zombie("agent:main:other")
    fleet = write_fleet(sim, tmp_path, stale_after="0s")
    state = tmp_path / "state"
    proc = run_cli(
        "recover", "new", "agent:main:zombie", "--fleet", str(fleet), "--json", state=state
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["session"]["verdict"] == "idle"
    new = sim.gateways["new"]
    assert new.mutation_count("agent:main:zombie", "sessions.reset") == 1
    assert new.mutation_count("agent:main:other") == 0  # only the session asked for
    # the state of that scan persists in the embedded Redis under the state dir
    status = run_cli("status", "--fleet", str(fleet), "--json", state=state)
    assert status.returncode == 0, status.stderr
    rows = {g["name"]: g for g in json.loads(status.stdout)["gateways"]}
    assert rows["new"]["reachable"] is True and rows["new"]["protocol"] == 4
    assert rows["new"]["sessions"]["zombie"] == 2  # as the scan saw them, before the reset
    assert rows["old"]["reachable"] is None  # never scanned yet
    unknown = run_cli("recover", "nope", "k", "--fleet", str(fleet), state=state)
    assert unknown.returncode == 64 and "no gateway named 'nope'" in unknown.stderr


def test_silence_is_listed_audited_and_lifted(tmp_path: Path) -> None:
    state = tmp_path / "state"
    made = run_cli("silence", "gw/agent:main:x", "--for", "1h", "--reason", "deploy", state=state)
    assert made.returncode == 0, made.stderr
    listed = json.loads(run_cli("incidents", "--json", state=state).stdout)
    assert [(s["gateway"], s["key"], s["reason"]) for s in listed["silences"]] == [
        ("gw", "agent:main:x", "deploy")
    ]
    assert listed["incidents"] == []
    assert run_cli("unsilence", "gw/agent:main:x", state=state).returncode == 0
    assert run_cli("unsilence", "gw/agent:main:x", state=state).returncode == 1  # none left
    records = json.loads(run_cli("audit", "--json", state=state).stdout)["records"]
    assert [r["outcome"] for r in records] == ["silenced", "unsilenced"]
    bad = run_cli("silence", "gw", "--for", "soon", state=state)
    assert bad.returncode == 64 and "--for 'soon'" in bad.stderr

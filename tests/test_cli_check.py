"""`lane-supervisor check` as a user runs it: a real process against simulated gateways."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.simulator import SimGateway, SimulatorServer
from supervisor.simulator.demo import DEMO_TOKEN, write_fleet


def run_cli(
    *args: str, state: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "SUPERVISOR_STATE_DIR": str(state)}
    full_env.pop("SUPERVISOR_FLEET", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


@pytest.fixture
def fleet_sim() -> Iterator[SimulatorServer]:
    server = SimulatorServer()
    for name, version, skew in (
        ("new", "2026.9.6", 0),
        ("old", "2026.3.24", 0),
        ("new-skewed", "2026.9.6", 300),
        ("old-skewed", "2026.3.24", -300),
    ):
        gw = server.add(SimGateway(name, version=version, token=DEMO_TOKEN, clock_skew_s=skew))
        gw.add_zombie("agent:dev:zombie-a")
        gw.add_zombie("agent:dev:zombie-b", age_s=60)
        gw.add_live("agent:dev:live", age_s=600)
        gw.add_idle("agent:dev:idle")
    with server.running():
        yield server


def test_check_json_calls_exactly_the_zombies_zombie(
    fleet_sim: SimulatorServer, tmp_path: Path
) -> None:
    fleet = write_fleet(fleet_sim, tmp_path, stale_after="0s")
    proc = run_cli("check", "--fleet", str(fleet), "--json", state=tmp_path / "s")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert [g["name"] for g in doc["gateways"]] == list(fleet_sim.gateways)
    for g in doc["gateways"]:
        assert g["reachable"] and g["error"] is None
        verdicts = {s["key"]: s["verdict"] for s in g["sessions"]}
        assert verdicts == {
            "agent:dev:zombie-a": "zombie",
            "agent:dev:zombie-b": "zombie",
            "agent:dev:live": "live",
            "agent:dev:idle": "idle",
        }, g["name"]
        for s in g["sessions"]:
            assert {"key", "verdict", "reason", "age_s"} <= set(s)
    for gw in fleet_sim.gateways.values():
        assert gw.mutations == []  # check never sends abort, reset or send
        assert set(gw.calls) <= {"sessions.list", "diagnostics.lanes"}  # both read-only


def test_check_exit_0_when_healthy_and_2_when_unreachable(tmp_path: Path) -> None:
    server = SimulatorServer()
    gw = server.add(SimGateway("healthy", token=DEMO_TOKEN))
    gw.add_live("agent:dev:live")
    gw.add_idle("agent:dev:idle")
    with server.running():
        fleet = write_fleet(server, tmp_path)
        proc = run_cli("check", "--fleet", str(fleet), state=tmp_path / "s")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "healthy" in proc.stdout
        text = fleet.read_text() + (
            '\n[[gateways]]\nname = "gone"\nurl = "ws://127.0.0.1:9"\n'
            'token_file = "simulator.token"\nconnect_timeout = "2s"\n'
        )
        fleet.write_text(text)
        proc = run_cli("check", "--fleet", str(fleet), "--json", state=tmp_path / "s")
    assert proc.returncode == 2
    gone = json.loads(proc.stdout)["gateways"][1]
    assert gone["name"] == "gone" and not gone["reachable"]
    assert gone["error_kind"] == "unreachable"


def test_pending_zombies_do_not_need_action(tmp_path: Path) -> None:
    server = SimulatorServer()
    server.add(SimGateway("g", token=DEMO_TOKEN)).add_zombie("agent:dev:z", age_s=120)
    with server.running():
        fleet = write_fleet(server, tmp_path, stale_after="3h")
        proc = run_cli("check", "--fleet", str(fleet), "--json", state=tmp_path / "s")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["gateways"][0]["sessions"][0]["verdict"] == "zombie_pending"


@pytest.mark.parametrize(
    ("fleet_text", "words"),
    [
        ("[[gateways]\nname='x'", "not valid TOML"),
        (
            '[[gateways]]\nname = "a"\nurl = "ws://h:1"\ntoken_env = "NOT_SET_ANYWHERE"\n',
            "gateway 'a': field 'token_env'",
        ),
        ('[[gateways]]\nname = "a"\nurl = "ftp://h"\ntoken_env = "HOME"\n', "field 'url'"),
    ],
)
def test_broken_fleet_file_is_one_line_and_exit_64(
    tmp_path: Path, fleet_text: str, words: str
) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(fleet_text)
    proc = run_cli("check", "--fleet", str(path), state=tmp_path / "s")
    assert proc.returncode == 64
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and words in lines[0]
    assert "Traceback" not in proc.stderr


def test_usage_errors_exit_64(tmp_path: Path) -> None:
    assert run_cli("check", "--no-such-option", state=tmp_path).returncode == 64
    proc = run_cli("check", state=tmp_path)
    assert proc.returncode == 64 and "SUPERVISOR_FLEET" in proc.stderr


def test_fleet_file_from_the_environment(fleet_sim: SimulatorServer, tmp_path: Path) -> None:
    fleet = write_fleet(fleet_sim, tmp_path, stale_after="0s")
    proc = run_cli("check", "--json", state=tmp_path / "s", env={"SUPERVISOR_FLEET": str(fleet)})
    assert proc.returncode == 1
    assert len(json.loads(proc.stdout)["gateways"]) == 4


def test_help_and_version(tmp_path: Path) -> None:
    proc = run_cli("--help", state=tmp_path)
    assert proc.returncode == 0 and "check" in proc.stdout
    assert run_cli("version", state=tmp_path).stdout.strip()

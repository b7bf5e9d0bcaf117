"""`lane-supervisor check` against the real openclaw lines that keep zombies across a restart
(2026.9.6 and 2026.3.24; the reconciling lines are in test_release_lines_real.py).

Each version gets one gateway holding every kind of session at once: zombies made the way
production makes them (runs hung on the model, the gateway SIGKILLed and started again), live
runs hung on the model since the new boot, sessions whose turn finished, and more than a page of
sessions that never ran, made last so that the zombies sit past 2026.9.6's first page of
`sessions.list` (100 rows). On 2026.9.6 the restart also replays the first interrupted session
(in key order): a live run, not a zombie. The real CLI, as a user runs it, must call exactly the
zombies `zombie`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.capabilities import assert_capabilities
from tests.e2e.cli import CliRun, run_supervisor, write_fleet
from tests.e2e.common import RESTART_ZOMBIE_LINES
from tests.e2e.factory import GatewayFactory
from tests.e2e.recipes import RealGateway
from tests.e2e.rows import row_facts

pytestmark = pytest.mark.e2e

#: sessions that never ran, made after everything else: more than one page of sessions.list
FILLERS = 105


@dataclass(frozen=True)
class Scene:
    """A real gateway and what each of its sessions is, by construction."""

    gateway: RealGateway
    fleet: Path
    zombies: tuple[str, ...]
    replaying: tuple[str, ...]
    live: tuple[str, ...]
    idle: tuple[str, ...]
    never_ran: tuple[str, ...]

    def expected(self) -> dict[str, str]:
        return {
            **dict.fromkeys(self.never_ran, "idle"),
            **dict.fromkeys(self.idle, "idle"),
            **dict.fromkeys(self.zombies, "zombie"),
            **dict.fromkeys(self.replaying, "live"),
            **dict.fromkeys(self.live, "live"),
        }


@pytest.fixture(scope="module", params=RESTART_ZOMBIE_LINES)
def scene(
    request: pytest.FixtureRequest,
    real_gateways: GatewayFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scene]:
    version: str = request.param
    gateway = real_gateways(version)
    try:
        idle = gateway.make_idle("healthy-1", "healthy-2")
        outcome = gateway.make_zombies("interrupted-1", "interrupted-2", "interrupted-3")
        live = gateway.make_hung("live-1", "live-2")
        never_ran = gateway.make_created(*(f"never-ran-{i:03d}" for i in range(FILLERS)))
        fleet = write_fleet(
            tmp_path_factory.mktemp(f"fleet-{version}"),
            [gateway],
            defaults={"stale_after": "0s"},
        )
        yield Scene(
            gateway=gateway,
            fleet=fleet,
            zombies=outcome.zombies,
            replaying=outcome.replaying,
            live=tuple(live),
            idle=tuple(idle),
            never_ran=tuple(never_ran),
        )
    finally:
        gateway.stop()
    assert gateway.pids() == [], "a process of the gateway outlived stop()"


def check_json(scene: Scene, state: Path, *extra: str) -> tuple[CliRun, dict[str, Any]]:
    run = run_supervisor("check", "--fleet", str(scene.fleet), "--json", *extra, state_dir=state)
    doc = run.json()
    assert isinstance(doc, dict) and len(doc["gateways"]) == 1, run.stdout
    report: dict[str, Any] = doc["gateways"][0]
    return run, report


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {s["key"]: s["verdict"] for s in report["sessions"]}


def test_the_scene_is_what_each_version_makes(scene: Scene) -> None:
    """Guards the premise: the shapes the shared doc measured, on this very gateway."""
    rows = row_facts(scene.gateway.rows())
    assert set(rows) == set(scene.expected())
    boot = scene.gateway.boot_time_ms()
    for key in scene.zombies + scene.replaying + scene.live:
        assert rows[key]["status"] == "running", (key, rows[key])
    for key in scene.idle:
        assert rows[key]["status"] == "done", (key, rows[key])
    for key in scene.never_ran:
        assert "status" not in rows[key], (key, rows[key])
    for key in scene.zombies + scene.replaying:
        assert rows[key]["startedAt"] < boot - 5000, (key, rows[key], boot)
    for key in scene.live:
        assert rows[key]["startedAt"] > boot, (key, rows[key], boot)
    if scene.gateway.version == "2026.9.6":
        assert len(scene.zombies) == 2 and scene.replaying == ("agent:main:interrupted-1",)
        for key in scene.zombies:
            assert rows[key]["hasActiveRun"] is False and rows[key]["activeRunIds"] == []
            assert rows[key]["abortedLastRun"] is True
        for key in scene.replaying + scene.live:
            assert rows[key]["hasActiveRun"] is True and "activeRunIds" not in rows[key]
        first_page = scene.gateway.call("sessions.list", {})
        assert first_page["hasMore"] is True and first_page["limitApplied"] == 100
        assert not {s["key"] for s in first_page["sessions"]} & set(scene.zombies)
    else:
        assert len(scene.zombies) == 3 and scene.replaying == ()
        # a zombie and a live hung run look the same there, except for startedAt
        for key in scene.zombies + scene.live:
            assert "hasActiveRun" not in rows[key] and "endedAt" not in rows[key]
            assert rows[key]["abortedLastRun"] is False


def test_check_calls_exactly_the_zombies_zombie(scene: Scene, tmp_path: Path) -> None:
    run, report = check_json(scene, tmp_path / "state")
    assert run.returncode == 1, run.stdout + run.stderr
    assert report["reachable"] is True and report["error"] is None, report
    assert report["server_version"] == scene.gateway.version
    assert report["protocol"] == (4 if scene.gateway.version == "2026.9.6" else 3)
    assert "operator.read" in report["scopes"]
    assert verdicts(report) == scene.expected()
    assert_capabilities(report, scene.gateway.version, scene.zombies)
    zombies = {s["key"] for s in report["sessions"] if s["verdict"] == "zombie"}
    assert zombies == set(scene.zombies) and zombies
    needing = {s["key"] for s in report["sessions"] if s["needs_action"]}
    assert needing == set(scene.zombies)
    by_key = {s["key"]: s for s in report["sessions"]}
    for key in scene.zombies:
        assert by_key[key]["session_id"], by_key[key]
        if scene.gateway.version == "2026.9.6":
            assert "no active run" in by_key[key]["reason"]
        else:
            assert "before the gateway booted" in by_key[key]["reason"]
    assert scene.gateway.token not in run.stdout + run.stderr


def test_check_changes_nothing(scene: Scene, tmp_path: Path) -> None:
    """check sends only connect and sessions.list: the rows, and the model's inbox, stay as
    they were, and a second check sees the same thing."""
    model_calls = len(scene.gateway.model.requests())
    before = row_facts(scene.gateway.rows())
    first_run, first = check_json(scene, tmp_path / "state")
    second_run, second = check_json(scene, tmp_path / "state")
    after = row_facts(scene.gateway.rows())
    assert first_run.returncode == second_run.returncode == 1
    assert verdicts(first) == verdicts(second) == scene.expected()
    assert after == before
    assert len(scene.gateway.model.requests()) == model_calls


def test_check_tables_name_the_zombies(scene: Scene, tmp_path: Path) -> None:
    run = run_supervisor(
        "check",
        "--fleet",
        str(scene.fleet),
        state_dir=tmp_path / "state",
        env={"COLUMNS": "250"},  # wide enough that rich does not fold the keys
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert scene.gateway.name in run.stdout
    for key in scene.zombies:
        assert key in run.stdout
    for key in scene.idle + scene.live + scene.never_ran:
        assert key not in run.stdout  # only sessions worth a look are listed without --all


def test_young_zombies_are_pending_and_need_no_action(scene: Scene, tmp_path: Path) -> None:
    fleet = write_fleet(tmp_path / "fleet", [scene.gateway], defaults={"stale_after": "1h"})
    run = run_supervisor("check", "--fleet", str(fleet), "--json", state_dir=tmp_path / "state")
    assert run.returncode == 0, run.stdout + run.stderr
    found = verdicts(run.json()["gateways"][0])
    expected = {k: ("zombie_pending" if v == "zombie" else v) for k, v in scene.expected().items()}
    assert found == expected

"""check, heal and the lane timeout on the release lines that reconcile at restart (2026.5.28,
2026.7.35), one gateway per line.

There a SIGKILL and restart makes no zombie: the interrupted rows are marked `failed` a few
seconds after the new boot. Their zombies come from runs that die inside a live process: a
model call whose connection dies (a crashed provider, a network reset) leaves 2026.5.28's row
`running` with `hasActiveRun: false`, forever, restart included. 2026.7.35 ends the same run
`timeout`: no way to make a zombie there was found (also tried: SIGKILL of the gateway's other
processes; it runs as one process), so there the tests show that every session is classified
right and left alone, the lane timeout aborts a hung live run, and the restart leaves no zombie.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.capabilities import assert_capabilities
from tests.e2e.cli import CliRun, run_supervisor, write_fleet
from tests.e2e.common import RECONCILING_LINES
from tests.e2e.factory import GatewayFactory
from tests.e2e.recipes import RealGateway
from tests.e2e.rows import row_facts, wait_for_rows

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Scene:
    gateway: RealGateway
    directory: Path
    #: runs hung when the gateway was SIGKILLed (reconciled by the restart)
    interrupted: tuple[str, ...]
    #: seconds from the ready gateway to the last interrupted row reconciled
    reconcile_seconds: float
    #: runs whose model call died in the live process and whose row stayed `running`
    zombies: tuple[str, ...]
    #: runs whose model call died and which the gateway ended itself
    ended: tuple[str, ...]
    live: tuple[str, ...]
    idle: tuple[str, ...]

    def fleet(self, **defaults: str) -> Path:
        return write_fleet(self.directory, [self.gateway], defaults=defaults)

    def expected(self) -> dict[str, str]:
        return {
            **dict.fromkeys(self.interrupted + self.ended + self.idle, "idle"),
            **dict.fromkeys(self.zombies, "zombie"),
            **dict.fromkeys(self.live, "live"),
        }


@pytest.fixture(scope="module", params=RECONCILING_LINES)
def scene(
    request: pytest.FixtureRequest,
    real_gateways: GatewayFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scene]:
    gateway = real_gateways(request.param)
    try:
        idle = gateway.make_idle("healthy")
        interrupted = tuple(gateway.make_hung("interrupted"))
        reconcile_seconds = gateway.restart_reconciled(interrupted)
        dead = gateway.make_dead_in_process("dead-1", "dead-2")
        live = gateway.make_hung("live")
        yield Scene(
            gateway=gateway,
            directory=tmp_path_factory.mktemp(f"lines-{request.param}"),
            interrupted=interrupted,
            reconcile_seconds=reconcile_seconds,
            zombies=dead.zombies,
            ended=dead.ended,
            live=tuple(live),
            idle=tuple(idle),
        )
    finally:
        gateway.stop()
    assert gateway.pids() == [], "a process of the gateway outlived stop()"


def supervisor(scene: Scene, command: str, state: Path, **defaults: str) -> CliRun:
    return run_supervisor(
        command, "--fleet", str(scene.fleet(**defaults)), "--json",
        state_dir=state, env={"SUPERVISOR_VERIFY_DELAY_S": "0.5"},
    )  # fmt: skip


def outcomes(doc: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for a in doc["actions"]:
        if a["key"]:
            out.setdefault(a["key"], []).append((a["step"], a["outcome"]))
    return out


def answered(gateway: RealGateway, key: str) -> None:
    """A normal message to `key` reaches the model and its turn finishes (the fake stops
    hanging: an earlier hung turn without a reply would carry the marker into this one)."""
    gateway.model.hang_enabled = False

    async def talk() -> None:
        async with gateway.client() as client:
            await gateway.deliver(client, key, f"[{key}] are you back? answer briefly")
            await wait_for_rows(
                client,
                lambda rows: rows.get(key, {}).get("status") == "done",
                timeout=60,
                what=f"the turn sent to {key} to finish",
            )

    try:
        gateway._run(talk())
    finally:
        gateway.model.hang_enabled = True


def test_the_scene_is_what_each_line_makes(scene: Scene) -> None:
    """Guards the premise: the shapes measured on this very gateway (README, "Release lines")."""
    rows = row_facts(scene.gateway.rows())
    boot = scene.gateway.boot_time_ms()
    print(f"{scene.gateway.version}: interrupted rows reconciled {scene.reconcile_seconds} s "
          "after the restart's working listing")  # fmt: skip
    assert scene.reconcile_seconds < 30
    for key in scene.interrupted:
        assert rows[key]["status"] == "failed" and rows[key]["hasActiveRun"] is False, rows[key]
        assert rows[key]["startedAt"] < boot, (rows[key], boot)
    for key in scene.live:
        assert rows[key]["status"] == "running" and rows[key]["hasActiveRun"] is True, rows[key]
        assert rows[key]["startedAt"] > boot, (rows[key], boot)
    if scene.gateway.version == "2026.5.28":
        assert len(scene.zombies) == 2 and scene.ended == ()
        for key in scene.zombies:
            assert rows[key]["status"] == "running" and rows[key]["hasActiveRun"] is False
            assert rows[key]["startedAt"] > boot  # died since the boot: a restart cannot tell
        for key in scene.live:
            assert rows[key].get("activeRunIds") is None, rows[key]
    else:
        assert scene.zombies == () and len(scene.ended) == 2
        for key in scene.ended:
            assert rows[key]["status"] == "timeout" and rows[key]["hasActiveRun"] is False
        for key in scene.live:
            assert isinstance(rows[key]["activeRunIds"], list) and rows[key]["activeRunIds"]


def test_check_classifies_every_session_and_changes_nothing(scene: Scene, tmp_path: Path) -> None:
    calls = len(scene.gateway.model.requests())
    before = row_facts(scene.gateway.rows())
    run = supervisor(scene, "check", tmp_path / "state", stale_after="0s")
    report = run.json()["gateways"][0]
    assert run.returncode == (1 if scene.zombies else 0), run.stdout + run.stderr
    assert report["reachable"] is True and report["error"] is None, report
    assert report["server_version"] == scene.gateway.version and report["protocol"] == 4
    found = {s["key"]: s["verdict"] for s in report["sessions"]}
    assert found == scene.expected()
    assert {s["key"] for s in report["sessions"] if s["needs_action"]} == set(scene.zombies)
    assert_capabilities(report, scene.gateway.version, scene.zombies)
    assert row_facts(scene.gateway.rows()) == before
    assert len(scene.gateway.model.requests()) == calls
    assert scene.gateway.token not in run.stdout + run.stderr


def test_heal_clears_exactly_the_zombies(scene: Scene, tmp_path: Path) -> None:
    before = scene.gateway.rows()
    run = supervisor(scene, "heal", tmp_path / "state", stale_after="0s", lane_timeout="1h")
    assert run.returncode == 0, run.stdout + run.stderr
    done = outcomes(run.json())
    assert set(done) == set(scene.zombies), done  # nothing else is touched
    for key in scene.zombies:
        assert ("verify", "healed") in done[key], done[key]
    after = scene.gateway.rows()
    for key in scene.zombies:
        assert after[key].get("status") != "running", after[key]
    for key in scene.live:
        assert after[key]["status"] == "running" and after[key]["hasActiveRun"] is True
        assert after[key]["startedAt"] == before[key]["startedAt"]  # the same run, untouched
    for key in scene.idle + scene.interrupted + scene.ended:
        assert row_facts({key: after[key]}) == row_facts({key: before[key]})
    for key in scene.zombies:
        answered(scene.gateway, key)


def test_the_gateways_own_reset_clears_a_zombie_and_the_next_message_is_answered(
    scene: Scene,
) -> None:
    """What heal relies on, shown with the plain `sessions.reset {key}` these lines accept."""
    for key in scene.zombies:
        if scene.gateway.rows()[key].get("status") == "running":
            scene.gateway.call("sessions.reset", {"key": key})
        row = scene.gateway.rows()[key]
        assert row.get("status") != "running" and row.get("hasActiveRun") is not True, row
        answered(scene.gateway, key)


def test_the_lane_timeout_aborts_hung_live_runs(scene: Scene, tmp_path: Path) -> None:
    rows = scene.gateway.rows()
    youngest = max(rows[k]["startedAt"] for k in scene.live)
    time.sleep(max(0.0, 12 - (time.time() * 1000 - youngest) / 1000))  # every run past 10 s
    # stale_after keeps any zombie out of it: this test is about the live runs alone
    run = supervisor(scene, "heal", tmp_path / "state", stale_after="1h", lane_timeout="10s")
    assert run.returncode == 0, run.stdout + run.stderr
    done = outcomes(run.json())
    assert set(done) == set(scene.live), done
    for key in scene.live:
        assert ("abort", "aborted") in done[key], done[key]
        assert ("verify", "healed") in done[key], done[key]
        if ("reset", "reset") in done[key]:
            assert done[key].index(("abort", "no_active_run")) < done[key].index(("reset", "reset"))

    async def settled() -> dict[str, dict[str, Any]]:
        async with scene.gateway.client() as client:
            return await wait_for_rows(
                client,
                lambda rows: all(rows[k].get("status") != "running" for k in scene.live),
                timeout=30,
                what="the aborted runs to leave `running`",
            )

    after = scene.gateway._run(settled())
    assert [k for k, r in after.items() if r.get("status") == "running"] == []
    answered(scene.gateway, scene.live[-1])

"""Recovery against real openclaw gateways (2026.9.6 and 2026.3.24): `heal` and `up`.

The scene per version: a finished session, zombies made as production makes them (runs hung on
the model, the gateway SIGKILLed and started again; on 2026.9.6 the first is replayed, a live
run), and live runs hung on the model since the new boot. `heal` must clear exactly the zombies,
after which a message to a healed session gets its answer; with a short lane timeout it also
aborts the hung runs and clears the stale rows 2026.3.24 leaves behind. `up` must heal a fresh
fleet of both versions within stale_after + scan_interval + 30 s, each step visible in Flower.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cli import run_supervisor, write_fleet
from tests.e2e.common import RESTART_ZOMBIE_LINES, HarnessError
from tests.e2e.factory import GatewayFactory
from tests.e2e.recipes import RealGateway
from tests.e2e.rows import send_message, wait_for_rows
from tests.support.procs import base_env, free_port, process, wait_for

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Scene:
    gateway: RealGateway
    directory: Path
    zombies: tuple[str, ...]
    replaying: tuple[str, ...]
    hung: tuple[str, ...]
    idle: tuple[str, ...]

    def fleet(self, **defaults: str) -> Path:
        return write_fleet(self.directory, [self.gateway], defaults=defaults)


@pytest.fixture(scope="module", params=RESTART_ZOMBIE_LINES)
def scene(
    request: pytest.FixtureRequest,
    real_gateways: GatewayFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scene]:
    gateway = real_gateways(request.param)
    try:
        idle = gateway.make_idle("healthy")
        outcome = gateway.make_zombies("stuck-1", "stuck-2", "stuck-3")
        hung = gateway.make_hung("hung-1", "hung-2")
        yield Scene(
            gateway=gateway,
            directory=tmp_path_factory.mktemp(f"heal-{request.param}"),
            zombies=outcome.zombies,
            replaying=outcome.replaying,
            hung=tuple(hung),
            idle=tuple(idle),
        )
    finally:
        gateway.stop()


def heal(scene: Scene, state: Path, **defaults: str) -> tuple[int, dict[str, Any]]:
    run = run_supervisor(
        "heal", "--fleet", str(scene.fleet(**defaults)), "--json",
        state_dir=state, env={"SUPERVISOR_VERIFY_DELAY_S": "0.5"},
    )  # fmt: skip
    doc = run.json()
    assert isinstance(doc, dict), run.stdout + run.stderr
    return run.returncode, doc


def outcomes(doc: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for a in doc["actions"]:
        if a["key"]:
            out.setdefault(a["key"], []).append((a["step"], a["outcome"]))
    return out


def test_heal_clears_every_zombie_and_touches_nothing_else(scene: Scene, tmp_path: Path) -> None:
    before = scene.gateway.rows()
    code, doc = heal(scene, tmp_path / "state", stale_after="0s", lane_timeout="1h")
    assert code == 0, doc
    done = outcomes(doc)
    assert set(done) == set(scene.zombies), done  # no action on any other session
    for key in scene.zombies:
        assert ("verify", "healed") in done[key], done[key]
    after = scene.gateway.rows()
    for key in scene.zombies:
        assert after[key].get("status") != "running", after[key]
    for key in scene.hung + scene.replaying:
        assert after[key]["status"] == "running", after[key]
        assert after[key]["startedAt"] == before[key]["startedAt"]  # the same run, untouched
    for key in scene.idle:
        assert after[key]["status"] == before[key]["status"] == "done"
        assert after[key]["sessionId"] == before[key]["sessionId"]
    verdicts = {s["key"]: s["verdict"] for s in doc["gateways"][0]["sessions"]}
    assert all(verdicts[k] == "idle" for k in scene.zombies), verdicts
    assert all(verdicts[k] == "live" for k in scene.hung + scene.replaying), verdicts

    # the point of it all: a message to a healed session runs and gets its answer
    key = scene.zombies[-1]

    async def talk() -> None:
        async with scene.gateway.client() as client:
            await scene.gateway.deliver(client, key, f"[{key}] are you back? answer briefly")
            await wait_for_rows(
                client,
                lambda rows: rows.get(key, {}).get("status") == "done",
                timeout=60,
                what=f"the turn sent to {key} after healing to finish",
            )

    scene.gateway._run(talk())


def test_heal_with_a_short_lane_timeout_aborts_hung_runs_and_their_stale_rows(
    scene: Scene, tmp_path: Path
) -> None:
    """Outcomes, not one path: every run past the lane timeout is aborted and its session ends
    healthy; where the abort leaves a stale `running` row (2026.3.24 does, not every time) the
    supervisor probes before it resets; sessions with nothing wrong are never touched."""
    rows = scene.gateway.rows()
    now_ms = time.time() * 1000
    youngest = max(rows[k]["startedAt"] or now_ms for k in scene.hung)
    time.sleep(max(0.0, 12 - (now_ms - youngest) / 1000))  # every hung run past 10 s
    healing_since = time.time() * 1000
    code, doc = heal(scene, tmp_path / "state", stale_after="0s", lane_timeout="10s")
    assert code == 0, doc
    done = outcomes(doc)
    for key in scene.hung + scene.replaying:
        steps = done[key]
        assert ("abort", "aborted") in steps, steps
        assert ("verify", "healed") in steps, steps
        if ("reset", "reset") in steps:
            # only a stale row left by the abort is reset, and only after a probe saw no run
            assert steps.index(("abort", "no_active_run")) < steps.index(("reset", "reset"))
    for key in scene.idle:
        assert key not in done

    # Every aborted run is gone. A row may be `running` again only with a run that started
    # since the heal began: a message that waited behind the aborted run (on 2026.3.24 under
    # load `deliver` may have sent the hung message twice, see lost_sends) is a live run.
    def settled(rows: dict[str, dict[str, Any]]) -> bool:
        return all(
            rows[k].get("status") != "running" or (rows[k].get("startedAt") or 0) >= healing_since
            for k in scene.hung + scene.replaying
        )

    try:
        after = rows_once(scene.gateway, settled, "every aborted run to be gone")
    except HarnessError as exc:
        seen = [(r.number, r.state, r.prompt[-60:]) for r in scene.gateway.model.requests()]
        raise AssertionError(
            f"{exc}\nactions: {done}\nresent: {scene.gateway.lost_sends}\nmodel: {seen}"
        ) from None
    stale = [k for k, r in after.items() if r.get("status") == "running" and k not in scene.hung]
    assert stale == [], after

    # the session a hung run held is usable again: the next message gets its answer (the hung
    # turn has no reply in the transcript, so the fake would see the marker again: stop hanging,
    # and let a run that started since the heal finish as a model would)
    key = scene.hung[-1]
    scene.gateway.model.hang_enabled = False
    scene.gateway.model.release_hung()
    try:
        answered(scene.gateway, key)
    finally:
        scene.gateway.model.hang_enabled = True


def rows_once(
    gateway: RealGateway,
    predicate: Callable[[dict[str, dict[str, Any]]], bool],
    what: str,
    timeout: float = 30,
) -> dict[str, dict[str, Any]]:
    """Rows once `predicate` holds (a gateway finishes an abort on its own clock)."""

    async def go() -> dict[str, dict[str, Any]]:
        async with gateway.client() as client:
            return await wait_for_rows(client, predicate, timeout=timeout, what=what)

    return gateway._run(go())


def wait_for_settled_rows(
    gateway: RealGateway, keys: tuple[str, ...], timeout: float = 30
) -> dict[str, dict[str, Any]]:
    """Rows once none of `keys` is `running`."""
    return rows_once(
        gateway,
        lambda rows: all(rows.get(k, {}).get("status") != "running" for k in keys),
        f"{keys} to leave `running`",
        timeout,
    )


def answered(gateway: RealGateway, key: str, timeout: float = 60) -> None:
    """A normal message to `key` reaches the model and its turn finishes."""

    async def talk() -> None:
        async with gateway.client() as client:
            await gateway.deliver(client, key, f"[{key}] are you back? answer briefly")
            await wait_for_rows(
                client,
                lambda rows: rows.get(key, {}).get("status") == "done",
                timeout=timeout,
                what=f"the turn sent to {key} to finish",
            )

    gateway._run(talk())


def flower_healed(port: int, password: str) -> set[str]:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/api/tasks", auth=("admin", password), timeout=5)
        tasks = r.json() if r.status_code == 200 else {}
    except httpx.HTTPError:
        return set()
    healed = set()
    for task in tasks.values():
        if task.get("name") == "supervisor.verify_session" and "'healed'" in str(task["result"]):
            healed.add(str(task.get("kwargs")))
    return healed


def test_up_heals_a_real_fleet_within_the_bound_each_step_in_flower(
    real_gateways: GatewayFactory, tmp_path: Path
) -> None:
    gateways = [real_gateways(v) for v in RESTART_ZOMBIE_LINES]
    try:
        zombies: list[tuple[RealGateway, str]] = []
        hung: list[tuple[RealGateway, str]] = []
        for gw in gateways:
            outcome = gw.make_zombies("lost-1", "lost-2")
            zombies += [(gw, k) for k in outcome.zombies]
            hung += [(gw, k) for k in outcome.replaying + tuple(gw.make_hung("busy"))]
        before = {(gw.name, k): gw.rows()[k]["startedAt"] for gw, k in hung}
        scan_s, stale_s = 5, 0
        fleet = write_fleet(
            tmp_path / "fleet",
            gateways,
            defaults={"stale_after": f"{stale_s}s", "scan_interval": f"{scan_s}s"},
        )
        port, password = free_port(), "e2e-flower-pw"
        env = base_env(
            SUPERVISOR_STATE_DIR=str(tmp_path / "state"),
            SUPERVISOR_FLOWER_PORT=str(port),
            SUPERVISOR_FLOWER_PASSWORD=password,
            SUPERVISOR_METRICS_PORT=str(free_port()),
            SUPERVISOR_FLEET_RELOAD_S="2",
        )
        argv = [sys.executable, "-m", "supervisor", "up", "--fleet", str(fleet)]
        with process(argv, env, tmp_path / "up.log") as up:
            wait_for("flower", lambda: httpx.get(
                f"http://127.0.0.1:{port}/api/tasks", auth=("admin", password), timeout=2
            ).status_code == 200 if _listening(port) else False, 60)  # fmt: skip
            ready = time.monotonic()

            def all_healed() -> bool:
                seen = flower_healed(port, password)
                return all(
                    any(f"'{gw.name}'" in s and f"'{key}'" in s for s in seen)
                    for gw, key in zombies
                )

            wait_for("every zombie healed in Flower", all_healed, 90, every=1)
            took = time.monotonic() - ready
            up.send_signal(signal.SIGTERM)
            assert up.wait(30) == 0
        assert took <= stale_s + scan_s + 30, f"healed after {took:.1f}s"
        for gw, key in zombies:
            assert gw.rows()[key].get("status") != "running"
        for gw, key in hung:
            row = gw.rows()[key]
            assert row["status"] == "running" and row["startedAt"] == before[(gw.name, key)]
    finally:
        for gw in gateways:
            gw.stop()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_message_sent_to_a_dead_lane_on_2026_9_6_ends_answered(
    real_gateways: GatewayFactory, tmp_path: Path
) -> None:
    """A user writes to a zombie. 2026.9.6 takes one of two paths: the message waits behind the
    dead lane (`held`: its run id in `activeRunIds`), or the send starts the gateway's own
    replay of the interrupted turn (a live run). Either way: nothing acts before `held_after`,
    a held lane is reset and verified, a live run is never aborted or reset, and the session
    ends healthy with the next message answered."""
    gateway = real_gateways("2026.9.6")
    try:
        (zombie,) = gateway.make_zombies("a-replayed", "b-stuck").zombies

        async def user_writes() -> dict[str, Any]:
            async with gateway.client() as client:
                await send_message(client, zombie, f"[{zombie}] hello? anyone?")
                rows = await wait_for_rows(
                    client,
                    lambda rows: rows.get(zombie, {}).get("hasActiveRun") is True,
                    timeout=30,
                    what="the message to wait behind the dead lane or start the replay",
                )
                return rows[zombie]

        gateway._run(user_writes())
        fleet = write_fleet(tmp_path / "fleet", [gateway], defaults={"stale_after": "0s"})
        state = tmp_path / "state"
        fresh = run_supervisor("heal", "--fleet", str(fleet), "--json", state_dir=state).json()
        assert [a for a in fresh["actions"] if a["key"] == zombie] == []  # nothing overdue
        fleet = write_fleet(
            tmp_path / "fleet", [gateway], defaults={"stale_after": "0s", "held_after": "0s"}
        )
        run = run_supervisor(
            "heal", "--fleet", str(fleet), "--json", state_dir=state,
            env={"SUPERVISOR_VERIFY_DELAY_S": "0.5"},
        )  # fmt: skip
        steps = [(a["step"], a["outcome"]) for a in run.json()["actions"] if a["key"] == zombie]
        if steps:
            # held: the dead lane is reset (never aborted: there is no run to abort) and verified
            assert steps == [("reset", "reset"), ("verify", "healed")], run.stdout
        else:
            # the replay: a live run, left alone; let it finish the way a model would
            row = gateway.rows()[zombie]
            assert row.get("status") == "running" and row.get("hasActiveRun") is True, row
            gateway.model.hang_enabled = False
            gateway.model.release_hung()
        gateway.model.hang_enabled = False
        row = wait_for_settled_rows(gateway, (zombie,), timeout=60)[zombie]
        assert not row.get("activeRunIds"), row
        answered(gateway, zombie)
    finally:
        gateway.stop()

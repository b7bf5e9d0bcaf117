"""Flower at fleet scale: a recovery's steps stay in Flower however many scans follow.

Real valkey, the simulator, and the workers, beat and Flower that `up` starts, with the very
command lines `up` uses (supervisor.up.child_commands), read through Flower's HTTP API.

Flower keeps its last `--max_tasks` tasks in memory (an LRU of task ids: every task it hears
of takes one slot, the least recently heard of goes first). What pushes a recovery out is the
number of tasks heard of after it, against max_tasks; so the issue's "20,000 scans after the
recovery, 10,000 kept" is this test's `SCANS` (600) against `MAX_TASKS` (30): twenty times
max_tasks rather than twice (against Flower 2.2's own default, 100,000, it would be a fifth),
the same eviction with a margin, in well under a minute instead of the ten minutes or more
that 20,000 real scans take on two shared cores. `FLOWER_SCALE_SCANS` and
`FLOWER_SCALE_MAX_TASKS` run it at other sizes (e.g. 20000 and 10000).

The control case runs the same fleet with SUPERVISOR_PERIODIC_EVENTS=true (scans send task
events, as before) and a fifth of the scans (four times max_tasks, still twice the issue's
ratio): the early recovery's steps are gone from Flower. Eviction only grows with the scans
that follow, so the first case, with five times as many, cannot pass by lack of pressure.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from supervisor.redis_server import EmbeddedRedis
from supervisor.settings import Settings
from supervisor.simulator import SimGateway, SimulatorServer, Version
from supervisor.up import child_commands
from tests.support.procs import base_env, free_port, process, wait_for

pytestmark = pytest.mark.integration

TOKEN = "canary-flower-scale-token-7c2a"
FLOWER_PASSWORD = "canary-flower-scale-pw-91b3"
SCANS = int(os.environ.get("FLOWER_SCALE_SCANS", "600"))
MAX_TASKS = int(os.environ.get("FLOWER_SCALE_MAX_TASKS", "30"))
#: gateways scanned every second: the scan rate the workers are offered (they take what they can)
GATEWAYS = 60
STEPS = {"supervisor.abort_session", "supervisor.reset_session", "supervisor.verify_session"}


@dataclass
class Fleet:
    gateways: list[SimGateway]
    flower: str
    results: redis.Redis

    def scans(self) -> int:
        """Scans the gateways have answered (each scan lists sessions once)."""
        return sum(gw.calls.count("sessions.list") for gw in self.gateways)

    def tasks(self) -> dict[str, Any]:
        try:
            r = httpx.get(f"{self.flower}/api/tasks", auth=("admin", FLOWER_PASSWORD), timeout=10)
        except httpx.HTTPError:
            return {}
        return r.json() if r.status_code == 200 else {}

    def recovery(self, key: str) -> dict[str, str] | None:
        """step task name -> task id of session `key`'s healed recovery, from Celery's result
        backend (not from Flower, which is under test); None until it has healed."""
        found: dict[str, str] = {}
        healed = False
        names = self.results.keys("celery-task-meta-*")
        for raw in self.results.mget(names) if names else []:
            doc = json.loads(raw) if raw else {}
            result = doc.get("result")
            if not isinstance(result, dict) or result.get("key") != key:
                continue
            name = f"supervisor.{result.get('step')}_session"
            if name in STEPS:
                found[name] = doc["task_id"]
                healed |= result.get("outcome") == "healed"
        return found if healed and found.keys() >= STEPS else None


def steps_in(tasks: dict[str, Any], key: str) -> dict[str, str]:
    """name -> task id of the recovery steps of session `key` that Flower lists."""
    return {
        t["name"]: uuid
        for uuid, t in tasks.items()
        if t.get("name") in STEPS and f"'{key}'" in str(t.get("kwargs"))
    }


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "valkey") as server:
        yield server


@contextlib.contextmanager
def fleet_under_up(
    tmp_path: Path, valkey: EmbeddedRedis, *, periodic_events: bool
) -> Iterator[Fleet]:
    """`GATEWAYS` simulated gateways scanned every second (one with a zombie from the start)
    and the processes of `up` with their own command lines; all stopped at the end."""
    sim = SimulatorServer()
    gateways = [
        sim.add(SimGateway(f"gw-{i:03d}", version=Version.V2026_9_6, token=TOKEN))
        for i in range(GATEWAYS)
    ]
    for gw in gateways:
        gw.add_idle("agent:main:main")
    gateways[0].add_zombie("agent:main:early")
    with ExitStack() as stack:
        stack.enter_context(sim.running())
        (tmp_path / "token").write_text(TOKEN)
        (tmp_path / "token").chmod(0o600)
        lines = ['[defaults]\nscan_interval = "1s"\nstale_after = "0s"\n']
        lines += [
            f'[[gateways]]\nname = "{gw.name}"\nurl = "{sim.url(gw.name)}"\ntoken_file = "token"\n'
            for gw in gateways
        ]
        fleet = tmp_path / "fleet.toml"
        fleet.write_text("\n".join(lines))
        port = free_port()
        env = base_env(
            SUPERVISOR_REDIS_URL=valkey.url,
            SUPERVISOR_FLEET=str(fleet),
            SUPERVISOR_STATE_DIR=str(tmp_path / "state"),
            SUPERVISOR_BEAT_MAX_LOOP_INTERVAL_S="0.5",
            SUPERVISOR_VERIFY_DELAY_S="0.2",
            SUPERVISOR_PERIODIC_EVENTS=str(periodic_events).lower(),
        )
        commands = child_commands(Settings(flower_port=port, flower_max_tasks=MAX_TASKS))
        for name in ("worker", "act", "page", "beat", "flower"):
            # as `up` does: Flower's login in its environment only
            child_env = (
                {**env, "FLOWER_BASIC_AUTH": f"admin:{FLOWER_PASSWORD}"}
                if name == "flower"
                else env
            )
            stack.enter_context(process(commands[name], child_env, tmp_path / f"{name}.log"))
        results = stack.enter_context(redis.Redis.from_url(valkey.url))
        yield Fleet(gateways, f"http://127.0.0.1:{port}", results)


def early_recovery_then_scans(fleet: Fleet, scans: int) -> tuple[dict[str, str], dict[str, Any]]:
    """The early zombie's step task ids, and what Flower lists once `scans` more scans have
    run and Flower has heard of them all."""
    early = wait_for(
        "the early recovery healed", lambda: fleet.recovery("agent:main:early"), 90, every=0.5
    )
    start = fleet.scans()
    wait_for(f"{scans} scans", lambda: fleet.scans() - start >= scans, 300, every=0.5)
    ended = time.time()
    fleet.gateways[-1].add_zombie("agent:main:late")
    wait_for("the late recovery healed", lambda: fleet.recovery("agent:main:late"), 90, every=0.5)

    def caught_up() -> dict[str, Any] | None:
        # events reach Flower in order: once it lists a task it heard of after the last of
        # those scans, it has heard of every one of them
        tasks = fleet.tasks()
        newest = max((t.get("timestamp") or 0 for t in tasks.values()), default=0)
        return tasks if newest > ended else None

    tasks = wait_for("Flower to hear of the scans", caught_up, 60, every=0.5)
    scans = sum(t.get("name") == "supervisor.scan_gateway" for t in tasks.values())
    kept = sum(uuid in tasks for uuid in early.values())
    print(f"{fleet.scans() - start} scans after the early recovery; Flower lists {len(tasks)} "
          f"tasks (max_tasks {MAX_TASKS}), {scans} of them scans; of the early recovery's "
          f"{len(early)} steps {kept} are listed")  # fmt: skip
    return early, tasks


def test_a_recovery_stays_in_flower_after_many_scans(tmp_path: Path, valkey: EmbeddedRedis) -> None:
    with fleet_under_up(tmp_path, valkey, periodic_events=False) as fleet:
        early, tasks = early_recovery_then_scans(fleet, SCANS)
        # Flower goes on recording recoveries (the late one, after the scans)
        assert wait_for(
            "the late recovery in Flower",
            lambda: steps_in(fleet.tasks(), "agent:main:late").keys() >= STEPS,
            30,
        )
    missing = {name for name, uuid in early.items() if uuid not in tasks}
    assert not missing, f"pushed out of Flower: {sorted(missing)}"
    assert steps_in(tasks, "agent:main:early") == early
    verify = tasks[early["supervisor.verify_session"]]
    assert verify["state"] == "SUCCESS" and "'healed'" in str(verify["result"])
    names = {t.get("name") for t in tasks.values()}
    assert "supervisor.scan_gateway" not in names
    assert FLOWER_PASSWORD not in str(tasks) and TOKEN not in str(tasks)


def test_control_with_scan_events_the_recovery_is_pushed_out(
    tmp_path: Path, valkey: EmbeddedRedis
) -> None:
    with fleet_under_up(tmp_path, valkey, periodic_events=True) as fleet:
        early, tasks = early_recovery_then_scans(fleet, max(SCANS // 5, 2 * MAX_TASKS))
    assert "supervisor.scan_gateway" in {t.get("name") for t in tasks.values()}
    assert len(tasks) <= MAX_TASKS
    kept = {name for name, uuid in early.items() if uuid in tasks}
    assert not kept, f"still in Flower with scan events on: {sorted(kept)}"

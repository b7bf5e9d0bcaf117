"""Real Celery worker and beat processes, a real valkey, the simulator: zombies healed once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from supervisor.redis_server import EmbeddedRedis
from supervisor.simulator import SimGateway, SimulatorServer, Version
from supervisor.state import StateStore
from tests.support.procs import base_env, celery, process, wait_for

pytestmark = pytest.mark.integration

#: a canary: it must never reach the broker, the results, the audit, the AOF or the logs
TOKEN = "canary-gw-token-worker-91b2"


def gateway_block(sim: SimulatorServer, name: str, extra: str = "") -> str:
    return (
        f'[[gateways]]\nname = "{name}"\nurl = "{sim.url(name)}"\ntoken_file = "token"\n{extra}\n'
    )


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "valkey") as server:
        yield server


def test_worker_and_beat_heal_zombies_once_and_follow_the_fleet_file(
    tmp_path: Path, redis: EmbeddedRedis
) -> None:
    sim = SimulatorServer()
    a = sim.add(SimGateway("a", version=Version.V2026_9_6, token=TOKEN))
    a.add_zombie("agent:main:z1")
    a.add_zombie("agent:main:z2")
    a.add_live("agent:main:live", age_s=600)
    a.add_idle("agent:main:done")
    b = sim.add(SimGateway("b", version=Version.V2026_3_24, token=TOKEN))
    b.add_zombie("agent:main:z")
    c = sim.add(SimGateway("c", version=Version.V2026_3_24, token=TOKEN))
    c.add_zombie("agent:main:z")
    fleet = tmp_path / "fleet.toml"
    (tmp_path / "token").write_text(TOKEN)
    header = '[defaults]\nscan_interval = "2s"\nstale_after = "0s"\n\n'
    with ExitStack() as stack:
        stack.enter_context(sim.running())
        fleet.write_text(
            header + gateway_block(sim, "a") + gateway_block(sim, "b", "dry_run = true")
        )
        env = base_env(
            SUPERVISOR_REDIS_URL=redis.url,
            SUPERVISOR_FLEET=str(fleet),
            SUPERVISOR_STATE_DIR=str(tmp_path / "state"),
            SUPERVISOR_FLEET_RELOAD_S="1",
            SUPERVISOR_BEAT_MAX_LOOP_INTERVAL_S="1",
            SUPERVISOR_VERIFY_DELAY_S="0.2",
        )
        worker = celery(
            "worker", "--concurrency=2", "--without-mingle", "--without-gossip", "-l", "INFO"
        )
        # two worker processes (four children) race for the same steps
        stack.enter_context(process([*worker, "-n", "w1@%h"], env, tmp_path / "w1.log"))
        stack.enter_context(process([*worker, "-n", "w2@%h"], env, tmp_path / "w2.log"))
        stack.enter_context(process(celery("beat", "-l", "INFO"), env, tmp_path / "beat.log"))

        def healed(gw: SimGateway, *keys: str) -> bool:
            return all(gw.sessions[k].status is None for k in keys)

        wait_for("a's zombies healed", lambda: healed(a, "agent:main:z1", "agent:main:z2"), 45)
        store = StateStore.from_url(redis.url)
        stack.callback(store.close)
        wait_for(
            "b's dry-run audit",
            lambda: any(
                r.gateway == "b" and r.outcome == "would_reset" for r in store.audit.read(1000)
            ),
            20,
        )
        # c joins the fleet file: beat schedules it without a restart, the worker heals it
        fleet.write_text(
            header
            + gateway_block(sim, "a")
            + gateway_block(sim, "b", "dry_run = true")
            + gateway_block(sim, "c")
        )
        wait_for("c healed after joining the fleet", lambda: healed(c, "agent:main:z"), 30)
        # several more scans pass: nothing is done twice
        scans_before = a.calls.count("sessions.list")
        wait_for("more scans of a", lambda: a.calls.count("sessions.list") >= scans_before + 3, 20)
        # b leaves the fleet file: its scan entry goes, without a restart
        fleet.write_text(header + gateway_block(sim, "a") + gateway_block(sim, "c"))
        wait_for(
            "b's scan entry removed",
            lambda: store.client.smembers("ls:beat:fleet-entries") == {"scan:a", "scan:c"},
            15,
        )
        b_lists = b.calls.count("sessions.list")
        wait_for(
            "two more scans of a", lambda: a.calls.count("sessions.list") >= scans_before + 5, 20
        )
        assert b.calls.count("sessions.list") <= b_lists + 1  # at most one already in flight
    for key in ("agent:main:z1", "agent:main:z2"):
        assert a.mutation_count(key, "sessions.abort") == 1, a.mutations
        assert a.mutation_count(key, "sessions.reset") == 1, a.mutations
    assert a.mutation_count("agent:main:live") == 0
    assert a.mutation_count("agent:main:done") == 0
    assert b.mutations == []  # dry run
    assert c.mutation_count("agent:main:z", "sessions.reset") == 1
    records = StateStore.from_url(redis.url).audit.read(10_000)
    for path in [*redis.data_dir.rglob("*"), *tmp_path.glob("*.log")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), f"token leaked into {path}"

    healed_keys = {(r.gateway, r.key) for r in records if r.outcome == "healed"}
    assert {("a", "agent:main:z1"), ("a", "agent:main:z2"), ("c", "agent:main:z")} <= healed_keys

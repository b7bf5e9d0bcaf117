"""Redis cost: commands (and writes) per scan, per healthy session and per recovery.

A dedicated embedded valkey; `Scanner.scan` and `run_ladder` (supervisor.recovery.runtime) run
inline against simulated 2026.9.6 gateways, and `INFO commandstats` is read before and after
(`CONFIG RESETSTAT` in between), so every command the engine sends is counted by name. Whether a
command writes is the server's own word (`COMMAND INFO` flags).

* healthy scan: a gateway of N healthy sessions (idle and live), scanned again and again after
  a first scan: commands and writes per scan at three sizes of N; the slope over N is the cost
  per healthy session (target: 0 writes);
* recovery: one zombie added to the same gateway (N + 1 rows), the full ladder run inline
  (scan, abort, reset, verify); its cost minus one healthy scan is the cost of one recovery.

This is the supervisor's own state traffic; the Celery broker, results and events come on top
when a worker runs the tasks (`fleet_scale` gives the whole stack's commands per scan).

    python -m bench.redis_cost [--size smoke|full] [--out DIR]
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import redis

from bench.common import Size, parser, rnd, say, slope, write_result
from supervisor.gateway.identity import load_or_create_identity
from supervisor.recovery.context import Engine, FleetSource
from supervisor.recovery.runtime import run_ladder
from supervisor.recovery.scanner import Scanner
from supervisor.redis_server import EmbeddedRedis
from supervisor.simulator import SimGateway, SimulatorServer, Version
from supervisor.simulator.demo import DEMO_TOKEN, write_fleet
from supervisor.state import StateStore

#: size -> (healthy sessions per gateway at each step, scans measured per step)
PLANS: dict[Size, tuple[tuple[int, ...], int]] = {
    "smoke": ((5, 20, 50), 2),
    "full": ((10, 100, 1000), 10),
}
#: commands that run a script: the server cannot tell whether it writes; ours do
SCRIPTS = {"eval", "evalsha", "fcall"}
#: our own measuring commands, never counted
OURS = {"info", "config|resetstat", "command|info", "hello", "client|setinfo", "ping"}


class Counter:
    """Command counts on one server, by name, between `reset()` and `read()`."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, protocol=2, decode_responses=True)
        self._flags: dict[str, bool] = {}

    def reset(self) -> None:
        self.client.config_resetstat()

    def read(self) -> dict[str, int]:
        stats: dict[str, Any] = self.client.info("commandstats")
        out = {}
        for name, values in stats.items():
            command = name.removeprefix("cmdstat_")
            if command not in OURS:
                out[command] = int(values["calls"])
        return out

    def is_write(self, command: str) -> bool:
        if command not in self._flags:
            top = command.split("|")[0]
            reply = self.client.execute_command("COMMAND", "INFO", top)  # type: ignore[no-untyped-call]
            info: dict[str, Any] = reply or {}
            flags = (info.get(top) or {}).get("flags") or []
            # the supervisor's scripts (lease acquire, renew, release) all write
            self._flags[command] = top in SCRIPTS or "write" in {str(f) for f in flags}
        return self._flags[command]

    def writes(self, counts: dict[str, int]) -> int:
        return sum(n for c, n in counts.items() if self.is_write(c))

    def close(self) -> None:
        self.client.close()


def healthy_gateway(server: SimulatorServer, name: str, sessions: int) -> SimGateway:
    gw = server.add(SimGateway(name, version=Version.V2026_9_6, token=DEMO_TOKEN))
    for i in range(sessions):
        key = f"agent:main:s{i:05d}"
        if i % 10 == 1:
            gw.add_live(key)
        else:
            gw.add_idle(key)
    return gw


def per(counts: dict[str, int], n: int) -> dict[str, float]:
    return {c: rnd(v / n, 2) or 0.0 for c, v in sorted(counts.items())}


def measure_size(
    engine: Engine, counter: Counter, server: SimulatorServer, gw: SimGateway, scans: int
) -> dict[str, Any]:
    scanner = Scanner(engine)
    scanner.scan(gw.name)  # first look: the gateway's state is created, connections opened
    counter.reset()
    for _ in range(scans):
        out = scanner.scan(gw.name)
        assert not out.starts, "a healthy gateway started an attempt"
    healthy = counter.read()
    healthy_total = sum(healthy.values()) / scans
    healthy_writes = counter.writes(healthy) / scans
    # one zombie appears: N + 1 rows; the whole ladder runs inline
    server.call(gw.add_zombie, "agent:main:zombie")
    counter.reset()
    actions = run_ladder(engine, gw.name)
    ladder = counter.read()
    healed = any(a.step == "verify" and a.outcome == "healed" for a in actions)
    recovery_total = sum(ladder.values()) - healthy_total
    recovery_writes = counter.writes(ladder) - healthy_writes
    return {
        "sessions": len(gw.sessions) - 1,
        "scan": {
            "commands": rnd(healthy_total, 2),
            "writes": rnd(healthy_writes, 2),
            "by_command": per(healthy, scans),
        },
        "recovery": {
            "healed": healed,
            "steps": [f"{a.step}:{a.outcome}" for a in actions],
            "commands": rnd(recovery_total, 2),
            "writes": rnd(recovery_writes, 2),
            "ladder_by_command": per(ladder, 1),
        },
    }


def run(size: Size, out: Path) -> dict[str, Any]:
    steps, scans = PLANS[size]
    server = SimulatorServer()
    gateways = [healthy_gateway(server, f"healthy-{n}", n) for n in steps]
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp, server.running():
        work = Path(tmp)
        fleet = write_fleet(server, work)
        with EmbeddedRedis(work / "valkey") as valkey:
            counter = Counter(valkey.url)
            store = StateStore.from_url(valkey.url)
            identity = load_or_create_identity(work / "state")
            try:
                for gw in gateways:
                    say(f"redis_cost: {len(gw.sessions)} healthy sessions, {scans} scans")
                    engine = Engine(FleetSource(fleet).get, store, identity, verify_delay_s=0)
                    got = measure_size(engine, counter, server, gw, scans)
                    say(
                        f"  scan {got['scan']['commands']} commands ({got['scan']['writes']} "
                        f"writes); recovery {got['recovery']['commands']} commands "
                        f"({got['recovery']['writes']} writes), healed {got['recovery']['healed']}"
                    )
                    runs.append(got)
            finally:
                store.close()
                counter.close()
    xs = [float(r["sessions"]) for r in runs]
    per_session = slope(xs, [r["scan"]["commands"] for r in runs]) or 0.0
    writes_per_session = slope(xs, [r["scan"]["writes"] for r in runs]) or 0.0
    biggest = runs[-1]
    doc = {
        "method": "dedicated embedded valkey; Scanner.scan / run_ladder inline (verify delay 0) "
        "on simulated 2026.9.6 gateways; INFO commandstats around each, reset with CONFIG "
        "RESETSTAT; writes by COMMAND INFO flags (write; EVALSHA counted as a write); per healthy "
        "session = least-squares slope over the three sizes; per recovery = ladder on N+1 rows "
        "(one zombie) minus one healthy scan",
        "figures": {
            "commands_per_scan": biggest["scan"]["commands"],
            "writes_per_scan": biggest["scan"]["writes"],
            "commands_per_healthy_session": rnd(per_session, 4),
            "writes_per_healthy_session": rnd(writes_per_session, 4),
            "commands_per_recovery": biggest["recovery"]["commands"],
            "writes_per_recovery": biggest["recovery"]["writes"],
        },
        "targets": {
            "writes_per_healthy_session": {
                "max": 0,
                "value": rnd(writes_per_session, 4),
                "met": abs(writes_per_session) < 1e-9,
            }
        },
        "growth": runs,
    }
    write_result(out, "redis_cost", size, doc)
    return doc


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__ or "").parse_args(argv)
    doc = run(args.size, args.out)
    print(json.dumps(doc["figures"]))


if __name__ == "__main__":
    main()

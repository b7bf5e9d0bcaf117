"""A real supervisor stack for the benchmarks: embedded valkey, Celery workers and beat, simulator.

The same processes `lane-supervisor up` runs (layout `up`: its worker command lines, taken from
`supervisor.up.child_commands`: one consumer per queue group, and beat with redbeat), minus
Flower and the metrics endpoint, against simulated gateways served by a thread of the benchmark
process or by `bench.simproc` in a process of its own. Layout `single` is the one worker
(`--concurrency=2`, every queue) of the first benchmarks. Workers and beat run as `celery -A
bench.probe` (the supervisor's app plus a record of each task's send and start times, for the
pick-up latency). Every process is killed when the `with` block ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import redis

from bench.common import (
    CpuMeter,
    RecordingSimulator,
    base_env,
    celery,
    group_pids,
    group_pss,
    group_rss,
    process,
    say,
    wait_for,
)
from supervisor.redis_server import EmbeddedRedis
from supervisor.settings import Settings
from supervisor.simulator.demo import write_fleet
from supervisor.up import child_commands

Layout = Literal["up", "single"]
LAYOUTS: tuple[Layout, ...] = ("up", "single")
#: the processes of `up` that are not workers, and that the benchmarks leave out or start apart
_NOT_WORKERS = ("beat", "flower", "metrics")

#: celery's log line prefix: "[2026-11-25 06:50:01,123: INFO/MainProcess] ..."
_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/[^\]]*\] (.*)$")
_SENDING = re.compile(r"Scheduler: Sending due task scan:(\S+) \(supervisor\.scan_gateway\)")
_ENTRY = re.compile(r"beat: scan entry scan:(\S+) every ")


def log_lines(path: Path) -> Iterator[tuple[float, str]]:
    """(epoch seconds, message) for each stamped line of a celery log (local time)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    for line in text.splitlines():
        m = _STAMP.match(line)
        if m:
            stamp = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            yield stamp.timestamp(), m.group(2)


def beat_sends(path: Path) -> dict[str, list[float]]:
    """gateway -> times beat sent its scan task, from the beat log."""
    out: dict[str, list[float]] = {}
    for ts, msg in log_lines(path):
        m = _SENDING.search(msg)
        if m:
            out.setdefault(m.group(1), []).append(ts)
    return out


def beat_entries(path: Path) -> dict[str, float]:
    """gateway -> time beat (re)created its scan entry, from the beat log."""
    out: dict[str, float] = {}
    for ts, msg in log_lines(path):
        m = _ENTRY.search(msg)
        if m:
            out[m.group(1)] = ts
    return out


class Simulated(Protocol):
    """A simulated fleet the stack can run against: in a thread here, or in its own process."""

    connect_times: dict[str, list[float]]

    def gateway_names(self) -> list[str]: ...

    def serve(
        self, work: Path, defaults: str, stale_after: str
    ) -> contextlib.AbstractContextManager[Path]:
        """Serve the gateways while the block runs; yields the fleet file."""
        ...


class InProcess:
    """The simulator in a thread of the benchmark process (its CPU is not counted, but it
    competes for the same cores)."""

    def __init__(self, sim: RecordingSimulator) -> None:
        self.sim = sim
        self.connect_times = sim.connect_times

    def gateway_names(self) -> list[str]:
        return list(self.sim.gateways)

    @contextlib.contextmanager
    def serve(self, work: Path, defaults: str, stale_after: str) -> Iterator[Path]:
        with self.sim.running():
            yield write_fleet(self.sim, work, stale_after=stale_after, extra=defaults)


def worker_commands(layout: Layout, settings: Settings) -> dict[str, list[str]]:
    """The worker command lines of a layout, as `celery -A bench.probe` (see the module doc)."""
    if layout == "single":
        commands = {
            "worker": celery(
                "worker", "--loglevel=INFO", "--concurrency=2", "--without-mingle",
                "--without-gossip", "-E",
            )
        }  # fmt: skip
    else:
        commands = {k: v for k, v in child_commands(settings).items() if k not in _NOT_WORKERS}
    return {name: _probed(argv) for name, argv in commands.items()}


def _probed(argv: list[str]) -> list[str]:
    i = argv.index("-A")
    return [*argv[: i + 1], "bench.probe", *argv[i + 2 :]]


def _ready(log: Path) -> Callable[[], bool]:
    return lambda: " ready." in log.read_text()


def _lister(pgid: int) -> Callable[[], list[int]]:
    return lambda: group_pids(pgid)


@dataclass
class Stack:
    """Handles on a running stack."""

    sim: Simulated
    valkey: EmbeddedRedis
    fleet: Path
    env: dict[str, str]
    #: worker name (as `up` names its children) -> process group id
    worker_pgids: dict[str, int]
    beat_pgid: int
    beat_log: Path
    #: worker name -> its log
    worker_logs: dict[str, Path]
    probe_dir: Path
    client: redis.Redis
    extra: dict[str, Any] = field(default_factory=dict)

    def worker_pids(self) -> list[int]:
        return [pid for pgid in self.worker_pgids.values() for pid in group_pids(pgid)]

    def meter(self) -> CpuMeter:
        redis_pid = self.valkey.pid
        assert redis_pid is not None
        groups = {f"worker:{name}": _lister(pgid) for name, pgid in self.worker_pgids.items()}
        return CpuMeter(
            {
                **groups,
                "beat": lambda: group_pids(self.beat_pgid),
                "redis": lambda: [redis_pid],
            }
        )

    def worker_rss(self) -> int:
        """Every worker process of the layout (parents and pool children), summed."""
        return sum(group_rss(pgid) for pgid in self.worker_pgids.values())

    def worker_rss_by_name(self) -> dict[str, int]:
        return {name: group_rss(pgid) for name, pgid in self.worker_pgids.items()}

    def worker_pss(self) -> int:
        return sum(group_pss(pgid) for pgid in self.worker_pgids.values())

    def beat_rss(self) -> int:
        return group_rss(self.beat_pgid)

    def audit(self) -> list[tuple[str, dict[str, str]]]:
        """Every entry of the audit stream (`ls:audit`), oldest first."""
        out: list[tuple[str, dict[str, str]]] = []
        start = "-"
        while True:
            page: Any = self.client.xrange("ls:audit", min=start, max="+", count=10_000)
            if not page:
                return out
            out += [(str(entry_id), dict(fields or {})) for entry_id, fields in page]
            start = f"({out[-1][0]}"

    def redis_info(self, section: str) -> dict[str, Any]:
        info: dict[str, Any] = self.client.info(section)
        return info


@contextlib.contextmanager
def running_stack(
    sim: RecordingSimulator | Simulated,
    work: Path,
    *,
    defaults: str,
    stale_after: str = "20m",
    settings: dict[str, str] | None = None,
    expect_entries: int | None = None,
    start_timeout: float = 120,
    layout: Layout = "up",
) -> Iterator[Stack]:
    """Valkey, workers and beat on `sim`'s gateways; yields once beat has every scan entry.

    `settings` are SUPERVISOR_* variables for every process; `up`'s worker concurrencies are
    read from them too (SUPERVISOR_WORKER_CONCURRENCY, ...)."""
    simulated: Simulated = InProcess(sim) if isinstance(sim, RecordingSimulator) else sim
    with ExitStack() as stack:
        fleet = stack.enter_context(simulated.serve(work, defaults, stale_after))
        valkey = stack.enter_context(EmbeddedRedis(work / "valkey"))
        client = redis.Redis.from_url(valkey.url, decode_responses=True)
        stack.callback(client.close)
        probe_dir = work / "probe"
        probe_dir.mkdir(parents=True, exist_ok=True)
        env = base_env(
            SUPERVISOR_REDIS_URL=valkey.url,
            SUPERVISOR_FLEET=str(fleet),
            SUPERVISOR_STATE_DIR=str(work / "state"),
            BENCH_PROBE_DIR=str(probe_dir),
            **(settings or {}),
        )
        # defaults plus the given concurrencies (no environment, no .env file)
        layout_settings = Settings.model_validate(
            {
                k.removeprefix("SUPERVISOR_").lower(): v
                for k, v in (settings or {}).items()
                if k.endswith(("_CONCURRENCY", "_POOL", "_WORKERS"))
            }
        )
        pgids: dict[str, int] = {}
        logs: dict[str, Path] = {}
        for name, argv in worker_commands(layout, layout_settings).items():
            logs[name] = work / f"worker-{name}.log"
            pgids[name] = stack.enter_context(process(argv, env, logs[name])).pid
        for name, log in logs.items():
            wait_for(f"worker {name}", _ready(log), start_timeout)
        beat_log = work / "beat.log"
        beat = stack.enter_context(
            process(_probed(celery("beat", "--loglevel=INFO")), env, beat_log)
        )
        wanted = len(simulated.gateway_names()) if expect_entries is None else expect_entries
        wait_for(
            f"beat's {wanted} scan entries",
            lambda: len(beat_entries(beat_log)) >= wanted,
            start_timeout,
            every=0.5,
        )
        say(f"  stack up ({layout}): valkey {valkey.url}, workers {pgids}, beat pid {beat.pid}")
        yield Stack(
            sim=simulated,
            valkey=valkey,
            fleet=fleet,
            env=env,
            worker_pgids=pgids,
            beat_pgid=beat.pid,
            beat_log=beat_log,
            worker_logs=logs,
            probe_dir=probe_dir,
            client=client,
        )
        # leaving the ExitStack stops beat first, then the workers, valkey and the simulator

"""A real supervisor stack for the benchmarks: embedded valkey, Celery worker and beat, simulator.

The same processes `lane-supervisor up` runs (worker with `--concurrency=2 --without-mingle
--without-gossip -E`, beat with redbeat), minus Flower, against simulated gateways served by a
thread of the benchmark process. Every process is killed when the `with` block ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from supervisor.simulator.demo import write_fleet

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


@dataclass
class Stack:
    """Handles on a running stack."""

    sim: RecordingSimulator
    valkey: EmbeddedRedis
    fleet: Path
    env: dict[str, str]
    worker_pgid: int
    beat_pgid: int
    beat_log: Path
    worker_log: Path
    client: redis.Redis
    extra: dict[str, Any] = field(default_factory=dict)

    def meter(self) -> CpuMeter:
        redis_pid = self.valkey.pid
        assert redis_pid is not None
        return CpuMeter(
            {
                "worker": lambda: group_pids(self.worker_pgid),
                "beat": lambda: group_pids(self.beat_pgid),
                "redis": lambda: [redis_pid],
            }
        )

    def worker_rss(self) -> int:
        return group_rss(self.worker_pgid)

    def worker_pss(self) -> int:
        return group_pss(self.worker_pgid)

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
    sim: RecordingSimulator,
    work: Path,
    *,
    defaults: str,
    stale_after: str = "20m",
    settings: dict[str, str] | None = None,
    expect_entries: int | None = None,
    start_timeout: float = 120,
) -> Iterator[Stack]:
    """Valkey, worker and beat on `sim`'s gateways; yields once beat has every scan entry."""
    with ExitStack() as stack:
        stack.enter_context(sim.running())
        fleet = write_fleet(sim, work, stale_after=stale_after, extra=defaults)
        valkey = stack.enter_context(EmbeddedRedis(work / "valkey"))
        client = redis.Redis.from_url(valkey.url, decode_responses=True)
        stack.callback(client.close)
        env = base_env(
            SUPERVISOR_REDIS_URL=valkey.url,
            SUPERVISOR_FLEET=str(fleet),
            SUPERVISOR_STATE_DIR=str(work / "state"),
            **(settings or {}),
        )
        worker_log, beat_log = work / "worker.log", work / "beat.log"
        worker_argv = celery(
            "worker", "--loglevel=INFO", "--concurrency=2", "--without-mingle", "--without-gossip",
            "-E",
        )  # fmt: skip
        worker = stack.enter_context(process(worker_argv, env, worker_log))
        wait_for("the worker", lambda: " ready." in worker_log.read_text(), start_timeout)
        beat = stack.enter_context(process(celery("beat", "--loglevel=INFO"), env, beat_log))
        wanted = len(sim.gateways) if expect_entries is None else expect_entries
        wait_for(
            f"beat's {wanted} scan entries",
            lambda: len(beat_entries(beat_log)) >= wanted,
            start_timeout,
            every=0.5,
        )
        say(f"  stack up: valkey {valkey.url}, worker pid {worker.pid}, beat pid {beat.pid}")
        yield Stack(
            sim=sim,
            valkey=valkey,
            fleet=fleet,
            env=env,
            worker_pgid=worker.pid,
            beat_pgid=beat.pid,
            beat_log=beat_log,
            worker_log=worker_log,
            client=client,
        )
        # leaving the ExitStack stops beat first, then the worker, valkey and the simulator

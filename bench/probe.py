"""The supervisor's Celery app, plus a record of when each task was sent and when it started.

The benchmarks start workers and beat as `celery -A bench.probe ...` instead of `-A
supervisor.app` (everything else as `up` runs them): every message gets a `bench_sent` header
(wall clock, at publish) and every task that ends appends one line to
`$BENCH_PROBE_DIR/<pid>.tsv`: task name, task id, sent, eta (or -), started, queue, and the CPU
seconds its thread used while it ran (the task's own cost, without the pool's and the
consumer's). Pick-up latency is started minus the
later of sent and eta: how long a task waited for a worker process, not its countdown. All
processes run on one machine, so their wall clocks agree.

`BENCH_REDBEAT_TICK=1` makes beat tick as redbeat does (one tick per due entry, each read in a
transaction of its own): the "before" of `supervisor.schedule`'s batched tick, measured on the
same machine (`fleet_scale --tag redbeat-tick --set ...` passes it through, see BENCHMARKS.md).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import IO, Any

from celery.signals import before_task_publish, task_postrun, task_prerun

from supervisor.app import app

__all__ = ["app", "read_probes"]

_DIR = os.environ.get("BENCH_PROBE_DIR")
_out: dict[int, IO[str]] = {}
#: task id -> (wall clock, thread CPU) at its start
_starts: dict[str, tuple[float, float]] = {}


def _file() -> IO[str]:
    pid = os.getpid()
    f = _out.get(pid)
    if f is None:  # one file per process: prefork children each write their own
        assert _DIR is not None
        # kept open for the process's life (line-buffered: a killed process loses no line)
        f = _out[pid] = Path(_DIR, f"{pid}.tsv").open("a", buffering=1)  # noqa: SIM115
    return f


def _stamp(headers: dict[str, Any] | None = None, **_: object) -> None:
    if headers is not None:
        headers["bench_sent"] = time.time()


def _started(task_id: str = "", **_: object) -> None:
    if _DIR is not None:
        _starts[task_id] = (time.time(), time.thread_time())


def _ended(task_id: str = "", task: Any = None, **_: object) -> None:
    begun = _starts.pop(task_id, None)
    if begun is None or task is None:
        return
    started, cpu0 = begun
    cpu = time.thread_time() - cpu0
    request = task.request
    sent = getattr(request, "bench_sent", None)
    eta = request.eta
    eta_ts = dt.datetime.fromisoformat(eta).timestamp() if isinstance(eta, str) else None
    queue = (request.delivery_info or {}).get("routing_key") or "-"
    _file().write(
        f"{task.name}\t{task_id}\t{sent if sent is not None else '-'}\t"
        f"{eta_ts if eta_ts is not None else '-'}\t{started}\t{queue}\t{cpu:.6f}\n"
    )


if os.environ.get("BENCH_REDBEAT_TICK") == "1":
    from redbeat.schedulers import RedBeatScheduler

    from supervisor.schedule import FleetScheduler

    def _redbeat_tick(self: FleetScheduler) -> float:
        return float(RedBeatScheduler.tick(self))

    FleetScheduler.tick_batched = _redbeat_tick  # type: ignore[method-assign]

before_task_publish.connect(_stamp)
task_prerun.connect(_started)
task_postrun.connect(_ended)


def read_probes(directory: Path) -> list[dict[str, Any]]:
    """Every task recorded under `directory`: name, id, sent, eta, started, queue, cpu_s."""
    rows: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.tsv")):
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) != 7:
                continue  # a line cut short by a killed process
            name, task_id, sent, eta, started, queue, cpu = parts
            rows.append(
                {
                    "name": name,
                    "id": task_id,
                    "sent": None if sent == "-" else float(sent),
                    "eta": None if eta == "-" else float(eta),
                    "started": float(started),
                    "queue": queue,
                    "cpu_s": float(cpu),
                }
            )
    return rows

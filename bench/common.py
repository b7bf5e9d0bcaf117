"""What every benchmark shares: sizes, result files, /proc readings, child processes.

Results are JSON documents under `bench/results/` (or `--out DIR`), one per benchmark and size,
each carrying the machine it ran on, so a number is never read without its context. CPU time
and memory come from /proc (no psutil dependency); child processes run in their own session and
are always killed, group by group, when a benchmark ends.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from supervisor.simulator.server import SimulatorServer

Size = Literal["smoke", "full"]
SIZES: tuple[Size, ...] = ("smoke", "full")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
T = TypeVar("T")


# -- command lines and result files -----------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--size", choices=SIZES, default="full", help="smoke (CI, seconds) or full")
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON result")
    return p


def machine() -> dict[str, Any]:
    """The machine a result was measured on (a shared 2-core box: load is noted too)."""
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": list(os.getloadavg()),
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def write_result(
    out: Path, name: str, size: Size, doc: dict[str, Any], suffix: str | None = None
) -> Path:
    """Write `doc` as `<out>/<name>-<size>[-<suffix>].json` (atomically); return the path."""
    out.mkdir(parents=True, exist_ok=True)
    full = {
        "benchmark": name,
        "size": size,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {**machine(), "loadavg_at_end": list(os.getloadavg())},
        **doc,
    }
    path = out / f"{name}-{size}{'' if suffix is None else '-' + suffix}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- statistics ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


def rnd(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def summary(values: Sequence[float], digits: int = 3) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": rnd(percentile(values, 50), digits),
        "p95": rnd(percentile(values, 95), digits),
        "max": rnd(max(values), digits) if values else None,
    }


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys over xs (the marginal cost per unit of x)."""
    if len(xs) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return None if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


# -- /proc -------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may hold spaces: split after its closing one
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one live process (0 when it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # fields[0] is field 3 (state): utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * PAGE


def group_pids(pgid: int) -> list[int]:
    """Every live process of one process group (a child started in its own session)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds used by labelled sets of processes between two readings.

    Each label maps to a function listing its live pids (a process group, or one pid).
    Processes are tracked by pid: one that exits between readings loses its last slice, so
    sample often (every second or so) to see short-lived children.
    """

    def __init__(self, pids: dict[str, Callable[[], list[int]]]) -> None:
        self.pids = pids
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self._sampled = False

    def sample(self) -> None:
        for label, list_pids in self.pids.items():
            for pid in list_pids():
                used = cpu_seconds(pid)
                # a process born after the first sample counts from its start
                self._first.setdefault((label, pid), 0.0 if self._sampled else used)
                self._last[(label, pid)] = used
        self._sampled = True

    def reset(self) -> None:
        """Start counting from the last sample."""
        self._first = dict(self._last)

    def used(self) -> dict[str, float]:
        out = dict.fromkeys(self.pids, 0.0)
        for (label, pid), last in self._last.items():
            out[label] += last - self._first.get((label, pid), 0.0)
        return out


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages (a prefork pool's copy-on-write) split by sharers."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def group_rss(pgid: int) -> int:
    """Resident memory of a whole process group, summed (shared pages counted per process)."""
    return sum(rss_bytes(pid) for pid in group_pids(pgid))


def group_pss(pgid: int) -> int:
    return sum(pss_bytes(pid) for pid in group_pids(pgid))


# -- child processes -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(**extra: str) -> dict[str, str]:
    """This environment minus any SUPERVISOR_/FLOWER_ setting a developer may have made."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPERVISOR_", "FLOWER_"))}
    env.update(extra)
    return env


def celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "supervisor.app", *args]


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` in its own session with output to `log`; its whole group is killed at the end."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT
        )
    try:
        yield proc
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.25) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")


# -- a simulator that remembers when each gateway was connected to ------------------------------


class RecordingSimulator(SimulatorServer):
    """The simulator, plus the wall-clock time of every connection, per gateway."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.connect_times: dict[str, list[float]] = {}

    async def _handle(self, ws: Any) -> None:
        name = ws.request.path.strip("/").split("?")[0] if ws.request is not None else ""
        self.connect_times.setdefault(name, []).append(time.time())
        await super()._handle(ws)

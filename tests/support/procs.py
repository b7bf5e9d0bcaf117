"""Real processes for tests: free loopback ports, deadline-bounded waits, process groups.

One copy for every test layer (integration, chaos, e2e). Processes are started in a session
of their own so that a kill reaches their children too (Celery pool processes, a gateway's
helpers). `bench/` keeps a small copy of its own (`bench/common.py`): benchmarks ship without
the tests, so they must not import them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def free_port(span: int = 1) -> int:
    """A loopback port P with P..P+span-1 all free right now (a gateway binds a few ports next
    to P). Free when asked, not reserved: another process may still take it first."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + span > 65536:
            continue
        if all(_bindable(port + extra) for extra in range(1, span)):
            return port
    raise RuntimeError(f"no run of {span} free loopback ports found")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy; raise TimeoutError naming `what` (and the
    last value seen) once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(every)


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a whole process group; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM the group of `proc` (a session leader), wait up to `timeout` for the leader, then
    SIGKILL whatever of the group is left and reap the leader."""
    if proc.poll() is None:
        signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    kill_group(proc)


def kill_group(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGKILL the whole group of `proc` (a crash, as far as its members can tell) and reap the
    leader."""
    signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)


def base_env(**extra: str) -> dict[str, str]:
    """This environment minus any SUPERVISOR_/FLOWER_ setting a developer may have made."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPERVISOR_", "FLOWER_"))}
    env.update(extra)
    return env


def celery(*args: str) -> list[str]:
    """argv of the project's Celery app command."""
    return [sys.executable, "-m", "celery", "-A", "supervisor.app", *args]


@contextlib.contextmanager
def process(
    argv: list[str], env: Mapping[str, str], log: Path, *, cwd: Path = REPO
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` in its own session with output to `log`; its whole group is stopped at the
    end, whatever the test did."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )
    try:
        yield proc
    finally:
        stop_group(proc)

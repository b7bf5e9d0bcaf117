"""Every process a gateway starts carries a tag in its environment: how its helpers in other
process groups (2026.9.6's spawn broker) are found, killed, and checked gone."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from pathlib import Path

from tests.e2e.common import TAG_ENV, HarnessError

RUN_TAG = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _environ_of(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def tagged_pids(tag_prefix: str) -> list[int]:
    """Live processes whose environment holds `TAG_ENV=<tag_prefix>...` (zombies excluded)."""
    want = f"{TAG_ENV}={tag_prefix}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if any(item.startswith(want) for item in _environ_of(int(entry.name))):
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            found.append(int(entry.name))
    return found


def kill_tagged(tag_prefix: str, *, timeout: float = 10.0) -> list[int]:
    """SIGKILL every process tagged with `tag_prefix` until none is left; returns those killed."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        pids = tagged_pids(tag_prefix)
        if not pids:
            return killed
        if time.monotonic() > deadline:
            raise HarnessError(f"processes tagged {tag_prefix!r} survive SIGKILL: {pids}")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                if pid not in killed:
                    killed.append(pid)
        time.sleep(0.05)


def leftover_processes() -> list[int]:
    """Processes started by any RealGateway of this Python process that are still alive."""
    return tagged_pids(f"{RUN_TAG}/")


def install_sigterm_cleanup() -> None:
    """Make SIGTERM stop the run like Ctrl-C (teardown, then atexit, kill every gateway)
    instead of killing the test process and leaving its gateways behind."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):

        def on_sigterm(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, on_sigterm)

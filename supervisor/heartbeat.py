"""Worker liveness for Prometheus: every worker process stamps a gauge every few seconds.

`LaneSupervisorWorkerDown` (deploy/prometheus/rules.yml) fires when no process on a host has
stamped `lane_supervisor_worker_heartbeat_timestamp_seconds` for a minute. The stamp is a
daemon thread started in each worker process: prefork children on `worker_process_init`, the
main process (where the solo and threads pools run tasks) on `worker_ready`. A process
killed with SIGKILL leaves its last stamp in its file, which is exactly what makes it go stale.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from celery.signals import worker_process_init, worker_ready

from supervisor import metrics

#: seconds between stamps; the alert allows 60 s, so several stamps can be missed first
INTERVAL_S = 10.0

_started: set[int] = set()
_lock = threading.Lock()


def start(interval_s: float = INTERVAL_S, *, stop: threading.Event | None = None) -> bool:
    """Start this process's heartbeat thread (once per process); True if started now."""
    with _lock:
        if os.getpid() in _started:
            return False
        _started.add(os.getpid())
    host = socket.gethostname()
    done = stop or threading.Event()

    def beat() -> None:
        while True:
            metrics.heartbeat(host)
            if done.wait(interval_s):
                return

    threading.Thread(target=beat, daemon=True, name="heartbeat").start()
    return True


def _on_worker_signal(**_: Any) -> None:
    start()


worker_process_init.connect(_on_worker_signal, weak=False)
worker_ready.connect(_on_worker_signal, weak=False)

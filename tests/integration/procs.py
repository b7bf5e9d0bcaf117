"""Real processes for integration tests: started in their own session, always killed at the end.

The helpers are the benchmarks' (bench/common.py), which start the same worker, beat and valkey
processes: one copy, so a fix to how processes are stopped reaches both.
"""

from __future__ import annotations

from bench.common import base_env, celery, free_port, process, stop_group, wait_for

__all__ = ["base_env", "celery", "free_port", "process", "stop_group", "wait_for"]

"""`lane-supervisor up` as a new user runs it: demo fleet healed, every step in Flower's API."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.procs import base_env, free_port, process, wait_for

pytestmark = pytest.mark.integration

DEMO_ZOMBIES = {
    (gw, key)
    for gw in ("demo-2026-9-6", "demo-2026-3-24")
    for key in ("agent:main:zombie-1", "agent:support:zombie-2")
}
STEP_TASKS = {
    "supervisor.abort_session",
    "supervisor.reset_session",
    "supervisor.verify_session",
}


def flower_tasks(port: int, auth: tuple[str, str]) -> dict[str, Any]:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/api/tasks", auth=auth, timeout=5)
    except httpx.HTTPError:
        return {}
    return r.json() if r.status_code == 200 else {}


def healed_in_flower(port: int, auth: tuple[str, str]) -> set[tuple[str, str]]:
    healed = set()
    for task in flower_tasks(port, auth).values():
        if task.get("name") == "supervisor.verify_session" and "'healed'" in str(
            task.get("result")
        ):
            kwargs = str(task.get("kwargs"))
            for gw, key in DEMO_ZOMBIES:
                if f"'{gw}'" in kwargs and f"'{key}'" in kwargs:
                    healed.add((gw, key))
    return healed


def test_up_heals_the_demo_fleet_visibly_in_flower_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    metrics_port = free_port()
    password = "flower-canary-5d1e"
    state = tmp_path / "state"
    env = base_env(
        SUPERVISOR_STATE_DIR=str(state),
        SUPERVISOR_FLOWER_PORT=str(port),
        SUPERVISOR_FLOWER_PASSWORD=password,
        SUPERVISOR_METRICS_PORT=str(metrics_port),
    )
    log = tmp_path / "up.log"
    started = time.monotonic()
    with process([sys.executable, "-m", "supervisor", "up"], env, log) as up:
        auth = ("admin", password)
        healed = wait_for(
            "all demo zombies healed in Flower",
            lambda: healed_in_flower(port, auth) >= DEMO_ZOMBIES,
            90,
            every=1,
        )
        assert healed
        took = time.monotonic() - started
        tasks = flower_tasks(port, auth)
        assert {t.get("name") for t in tasks.values()} >= STEP_TASKS
        # scans send no task events by default (SUPERVISOR_PERIODIC_EVENTS): Flower keeps steps
        assert "supervisor.scan_gateway" not in {t.get("name") for t in tasks.values()}
        # unauthenticated: refused
        assert httpx.get(f"http://127.0.0.1:{port}/api/tasks", timeout=5).status_code == 401
        # the durable record, read while up runs (it reuses up's embedded Redis)
        audit = subprocess.run(
            [sys.executable, "-m", "supervisor", "audit", "--json", "-n", "500"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert audit.returncode == 0, audit.stderr
        records = json.loads(audit.stdout)["records"]
        assert {
            (r["gateway"], r["key"]) for r in records if r["outcome"] == "healed"
        } >= DEMO_ZOMBIES
        # the zombie that cannot be healed is paged to the demo's local receiver, once
        wait_for(
            "the demo page",
            lambda: "page received: firing demo-no-admin/agent:main:stuck" in log.read_text(),
            60,
            every=1,
        )
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        assert httpx.get(metrics_url, timeout=5).status_code == 401
        body = httpx.get(metrics_url, auth=("metrics", password), timeout=5).text
        for series in (
            "lane_supervisor_scans_total",
            "lane_supervisor_scan_duration_seconds_bucket",
            "lane_supervisor_sessions",
            "lane_supervisor_actions_total",
            "lane_supervisor_time_to_heal_seconds_bucket",
        ):
            assert series in body, series
        assert 'lane_supervisor_actions_total{outcome="healed",step="verify"}' in body
        assert "agent:main" not in body  # no session keys in labels
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0
    text = log.read_text()
    assert password not in text  # printed only when generated; never logged
    assert "flower-canary" not in json.dumps(tasks)
    assert took < 60, f"demo took {took:.0f}s to heal"
    assert text.count("page received: firing demo-no-admin/agent:main:stuck") == 1

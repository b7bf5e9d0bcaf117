"""The switch behind Flower at fleet scale: which tasks send Celery task events, and Flower's
room (`--max_tasks`) on the command line `up` runs it with. The behaviour itself, with real
workers, beat and Flower, is tests/integration/test_flower_scale.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from supervisor.queues import PERIODIC_TASKS, TASK_ROUTES
from supervisor.settings import Settings
from supervisor.up import child_commands
from tests.support.procs import base_env

PROBE = (
    "import json, supervisor.tasks\n"
    "from supervisor.app import app\n"
    "print(json.dumps({n: t.send_events for n, t in app.tasks.items()"
    " if n.startswith('supervisor.')}))"
)


@pytest.mark.parametrize("on", [False, True])
def test_only_the_periodic_tasks_follow_the_switch(on: bool) -> None:
    env = base_env(SUPERVISOR_PERIODIC_EVENTS=str(on).lower())
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    sends = json.loads(out.stdout)
    assert set(sends) == set(TASK_ROUTES)
    for name, value in sends.items():
        assert value is (on if name in PERIODIC_TASKS else True), name


def test_the_periodic_tasks_are_what_beat_sends() -> None:
    from supervisor.schedule import SCAN_TASK

    assert set(PERIODIC_TASKS) == {SCAN_TASK, "supervisor.page_tick"}


def test_flower_gets_its_max_tasks_from_the_settings() -> None:
    assert "--max_tasks=100000" in child_commands(Settings())["flower"]
    assert "--max_tasks=500" in child_commands(Settings(flower_max_tasks=500))["flower"]

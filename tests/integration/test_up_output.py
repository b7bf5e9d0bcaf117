"""A calm `up`: a compact summary in the terminal, each process's full log in a file of its own,
and `--logs` to stream them.

Real `lane-supervisor up` on the demo fleet, three times on one state dir: with its output in a
file (not a terminal: plain summary lines), with `--logs`, and under a pseudo-terminal (the live
view). The Celery lines the terminal no longer shows must be in `<state>/logs/worker.log`, and
no secret in any log file.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from supervisor.simulator.demo import DEMO_TOKEN
from tests.support.procs import REPO, base_env, free_port, process, stop_group, wait_for

pytestmark = pytest.mark.integration

PASSWORD = "flower-canary-calm-42e1"
CHILDREN = ("worker", "act", "page", "beat", "flower", "metrics")
#: a Celery log line as the worker writes it: "[2026-12-02 01:20:04,123: INFO/MainProcess] ..."
CELERY_LINE = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+: (INFO|WARNING|DEBUG)/")
HEALED = re.compile(r"verify healed")


def _env(state: Path) -> dict[str, str]:
    return base_env(
        SUPERVISOR_STATE_DIR=str(state),
        SUPERVISOR_FLOWER_PORT=str(free_port()),
        SUPERVISOR_FLOWER_PASSWORD=PASSWORD,
        SUPERVISOR_METRICS_PORT=str(free_port()),
        SUPERVISOR_SUMMARY_INTERVAL_S="0.5",
    )


def _stop(up: subprocess.Popen[bytes]) -> int:
    up.send_signal(signal.SIGTERM)
    return up.wait(30)


def test_up_shows_a_summary_logs_to_files_and_streams_them_with_logs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    logs = state / "logs"
    out = tmp_path / "up.out"
    with process([sys.executable, "-m", "supervisor", "up"], _env(state), out) as up:
        wait_for("a healed zombie in the summary", lambda: HEALED.search(out.read_text()), 90)
        wait_for("the counts line", lambda: "| sessions: " in out.read_text(), 30)
        assert _stop(up) == 0
    text = out.read_text()
    assert not CELERY_LINE.search(text), "Celery log lines reached the terminal"
    assert "Task supervisor." not in text and "celery@" not in text
    assert re.search(r"up: \d\d:\d\d:\d\d gateways 3 \(", text), text
    assert f"{logs}/<process>.log" in text  # where the full logs are, said once
    for name in CHILDREN:
        path = logs / f"{name}.log"
        assert path.is_file(), name
        assert path.stat().st_mode & 0o777 == 0o600, name
    worker = (logs / "worker.log").read_text()
    assert CELERY_LINE.search(worker)
    # steps run in the act worker (the queue layout): its own log
    assert re.search(
        r"Task supervisor\.(abort|reset|verify)_session\[[-0-9a-f]+\] succeeded",
        (logs / "act.log").read_text(),
    )
    assert "celery@" in worker or "worker@" in worker
    assert "Connected to redis" in (logs / "flower.log").read_text()
    redis_password = (state / "redis" / "password").read_text().strip()
    for path in logs.iterdir():
        body = path.read_text(errors="replace")
        for secret in (PASSWORD, redis_password, DEMO_TOKEN):
            assert secret not in body, f"{path.name} holds a secret"
    assert redis_password not in text and DEMO_TOKEN not in text

    # --logs: the same lines, streamed with the process's name; the files are written too
    streamed = tmp_path / "up-logs.out"
    argv = [sys.executable, "-m", "supervisor", "up", "--logs"]
    with process(argv, _env(state), streamed) as up:
        wait_for(
            "a worker's Celery lines streamed",
            lambda: re.search(r"^worker +\| .*succeeded", streamed.read_text(), re.M),
            90,
        )
        assert _stop(up) == 0
    text = streamed.read_text()
    assert re.search(r"^beat +\| .*Sending due task", text, re.M)
    assert "| sessions: " not in text  # no summary beside the stream
    assert (logs / "worker.log.1").read_text() == worker  # the previous run's, kept once
    assert "succeeded" in (logs / "worker.log").read_text()
    assert PASSWORD not in text and redis_password not in text


@contextmanager
def _in_pty(argv: list[str], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
        start_new_session=True, cwd=REPO,
    )  # fmt: skip
    os.close(follower)
    try:
        yield proc, leader
    finally:
        stop_group(proc)
        os.close(leader)


def test_up_on_a_terminal_draws_a_live_summary(tmp_path: Path) -> None:
    env = {**_env(tmp_path / "state"), "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50"}
    screen = bytearray()

    def read() -> str:
        while select.select([leader], [], [], 0)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen.extend(chunk)
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))

    with _in_pty([sys.executable, "-m", "supervisor", "up"], env) as (up, leader):
        wait_for("a healed zombie in the live view", lambda: HEALED.search(read()), 90, every=0.3)
        up.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while up.poll() is None and time.monotonic() < deadline:
            read()
            time.sleep(0.1)
        assert up.returncode == 0
        text = read()
    assert "recent actions" in text and "recent pages" in text
    assert "recovering" in text and "gateways" in text
    assert not CELERY_LINE.search(text), "Celery log lines reached the terminal"
    assert PASSWORD not in text

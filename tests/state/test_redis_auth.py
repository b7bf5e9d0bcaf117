"""The embedded Redis requires a generated password, kept 0600, never on a command line or log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from supervisor.errors import EmbeddedRedisError
from supervisor.redis_server import EmbeddedRedis
from supervisor.state.connection import mask_url
from tests.support.procs import base_env, free_port, process, wait_for


def anonymous(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, protocol=2, socket_timeout=2)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def ps_args() -> str:
    return subprocess.run(
        ["ps", "-eo", "pid,args", "--no-headers"], capture_output=True, text=True, check=True
    ).stdout


def test_an_unauthenticated_client_is_refused(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "d", auth=True) as server:
        with pytest.raises(redis.AuthenticationError), anonymous(server.port) as client:
            client.set("k", "v")
        wrong = redis.Redis(host="127.0.0.1", port=server.port, password="wrong", protocol=2)
        with pytest.raises(redis.AuthenticationError), wrong:
            wrong.ping()
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
            assert client.set("k", "v")
        assert mask_url(server.url) == f"redis://:***@127.0.0.1:{server.port}/0"


def test_control_without_auth_the_same_client_gets_in(tmp_path: Path) -> None:
    # what the test above would see with the mechanism off: it can fail
    with EmbeddedRedis(tmp_path / "d") as server, anonymous(server.port) as client:
        assert client.set("k", "v")
        assert urlsplit(server.url).password is None


def test_password_and_config_are_0600_and_reused_on_restart(tmp_path: Path) -> None:
    os.umask(0o022)  # the usual umask: files would be 0644 without care
    server = EmbeddedRedis(tmp_path / "d", auth=True)
    try:
        url = server.start()
        assert mode(server.password_path) == 0o600
        assert mode(server.auth_conf_path) == 0o600
        password = server.password_path.read_text().strip()
        assert len(password) >= 32 and urlsplit(url).password == password
        with redis.Redis.from_url(url) as client:
            client.set("kept", "1")
        assert server.restart() == url  # same password, same port, same data
        with redis.Redis.from_url(server.url) as client:
            assert client.get("kept") == b"1"
    finally:
        server.stop()
    other = EmbeddedRedis(tmp_path / "other", auth=True)
    try:
        assert urlsplit(other.start()).password != password  # generated per data dir
    finally:
        other.stop()


def test_a_password_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "password").write_text("leaked-to-the-group\n")
    (data / "password").chmod(0o640)
    with pytest.raises(EmbeddedRedisError, match="readable by others"):
        EmbeddedRedis(data, auth=True).start()


def test_the_password_is_not_on_the_command_line_nor_in_the_log(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "d", auth=True) as server:
        password = server.password_path.read_text().strip()
        assert server.pid is not None
        # what was exec'd (valkey then rewrites its title to "valkey-server host:port", which
        # would hide even a --requirepass argument from a later `ps`: check the argv itself)
        assert server.argv[1] == str(server.auth_conf_path)  # the config file comes first
        assert password not in " ".join(server.argv)
        assert "requirepass" not in " ".join(server.argv)
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
        assert password not in cmdline
        assert password not in ps_args()
        with redis.Redis.from_url(server.url) as client:
            client.ping()
        # `requirepass` in the config: CONFIG GET shows it, to an authenticated client only
        log = server.log_path.read_text()
    assert password not in log
    assert "requirepass" not in log


@pytest.mark.integration
def test_up_runs_redis_with_a_password_nowhere_in_ps_or_logs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    metrics_port = free_port()
    env = base_env(
        SUPERVISOR_STATE_DIR=str(state),
        SUPERVISOR_FLOWER_PORT=str(free_port()),
        SUPERVISOR_FLOWER_PASSWORD="flower-canary-3c9d",
        SUPERVISOR_METRICS_PORT=str(metrics_port),
        SUPERVISOR_LOG_LEVEL="DEBUG",  # the chattiest logs: still no password
    )
    log = tmp_path / "up.log"
    with process([sys.executable, "-m", "supervisor", "up"], env, log):
        url_file = state / "redis" / "server.url"
        wait_for("up's Redis", url_file.is_file, 30)
        password_file = state / "redis" / "password"
        password = password_file.read_text().strip()
        # the worker scanned through the authenticated broker and state store
        wait_for(
            "a verified heal in the metrics",
            lambda: (
                'lane_supervisor_actions_total{outcome="healed",step="verify"}'
                in _metrics(metrics_port)
            ),
            90,
            every=1,
        )
        assert mode(password_file) == 0o600
        assert mode(url_file) == 0o600
        assert mode(state / "redis" / "auth.conf") == 0o600
        url = url_file.read_text().strip()
        assert urlsplit(url).password == password
        port = urlsplit(url).port
        assert port is not None
        with pytest.raises(redis.AuthenticationError), anonymous(port) as client:
            client.get("x")
        assert password not in ps_args()
        # a CLI command run beside `up` finds the server and its password by itself
        audit = subprocess.run(
            [sys.executable, "-m", "supervisor", "audit", "--json", "-n", "5"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert audit.returncode == 0, audit.stderr
        assert password not in audit.stdout + audit.stderr
        time.sleep(1)
    text = log.read_text()
    assert "redis://:***@127.0.0.1" in text  # `up` names the server, masked
    assert password not in text
    # every process's full log (DEBUG here), kept in the state dir
    logs = sorted((state / "logs").glob("*.log"))
    assert {p.name for p in logs} >= {"worker.log", "beat.log", "flower.log"}
    for path in logs:
        assert password not in path.read_text(errors="replace"), path.name


def _metrics(port: int) -> str:
    try:
        r = httpx.get(
            f"http://127.0.0.1:{port}/metrics", auth=("metrics", "flower-canary-3c9d"), timeout=5
        )
    except httpx.HTTPError:
        return ""
    return r.text if r.status_code == 200 else ""

"""EmbeddedRedis: start, stop, clear errors when the binary is missing or will not start."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import redis

from supervisor.errors import EmbeddedRedisError
from supervisor.redis_server import EmbeddedRedis, redis_server_binary

pytestmark = pytest.mark.integration


def test_binary_is_found() -> None:
    binary = redis_server_binary()
    assert binary.is_file()
    assert os.access(binary, os.X_OK)


def test_shared_server_config(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        config = client.config_get("*")
        assert config["bind"] == "127.0.0.1"
        assert config["protected-mode"] == "yes"
        assert config["appendonly"] == "yes"
        assert config["save"] == ""
    finally:
        client.close()


def test_context_manager_starts_and_stops(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "d") as server:
        pid = server.pid
        assert pid is not None
        assert server.running
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
    assert not server.running
    assert server.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "ready to exit" in (tmp_path / "d" / "valkey-server.log").read_text()


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "d", binary=tmp_path / "no-such-server")
    with pytest.raises(EmbeddedRedisError, match=r"cannot run .*no-such-server"):
        server.start()


def test_failed_start_shows_the_log_tail(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "d", extra_args=("--no-such-directive", "yes"))
    with pytest.raises(EmbeddedRedisError) as info:
        server.start()
    message = str(info.value)
    assert "exited with code" in message
    assert "no-such-directive" in message
    assert not server.running


def test_taken_port_is_reported(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = EmbeddedRedis(tmp_path / "d", port=port)
        with pytest.raises(EmbeddedRedisError, match="already in use"):
            server.start()


def test_stop_and_restart_keep_port_and_data(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "d")
    url = server.start()
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        client.set("k", "v")
        assert server.restart() == url
        assert client.get("k") == "v"
        server.kill_hard()
        assert not server.running
        server.start()
        assert client.get("k") == "v"
    finally:
        client.close()
        server.stop()
    server.stop()  # idempotent

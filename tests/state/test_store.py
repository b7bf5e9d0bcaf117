"""StateStore: reachability errors with masked passwords, and the durability check."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from supervisor.errors import ConfigError, RedisUnavailable
from supervisor.redis_server import EmbeddedRedis
from supervisor.state import StateStore
from supervisor.state.connection import make_client, mask_url
from tests.state.conftest import free_port
from tests.support.fixtures import make_store

pytestmark = pytest.mark.integration

PASSWORD = "hunter2-canary"


def test_ping_on_a_live_server(store: StateStore) -> None:
    store.ping()
    assert store.url.startswith("redis://127.0.0.1:")


def test_unreachable_server_is_named_with_password_masked() -> None:
    port = free_port()
    store = make_store(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", "x:")
    assert PASSWORD not in store.url
    started = time.monotonic()
    with pytest.raises(RedisUnavailable) as info:
        store.ping()
    assert time.monotonic() - started < 1.0  # refused at once, no retries
    message = str(info.value)
    assert message.startswith(f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0: ")
    assert "Connection refused" in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(info.value.__cause__)
    # every operation fails the same way, not with a redis-py exception
    with pytest.raises(RedisUnavailable):
        store.leases.acquire("gw", "k", "me", 1000)
    with pytest.raises(RedisUnavailable):
        store.attempts.get("gw", "k", "s")
    with pytest.raises(RedisUnavailable):
        store.check_durability()


def test_wrong_password_is_unavailable_and_masked(tmp_path: Path) -> None:
    # a password on the command line is visible in ps: fine for a test server only
    with EmbeddedRedis(tmp_path / "auth", extra_args=("--requirepass", PASSWORD)) as server:
        wrong = make_store(server.url.replace("redis://", "redis://default:wrong-pw@"), "x:")
        with pytest.raises(RedisUnavailable) as info:
            wrong.ping()
        assert "wrong-pw" not in str(info.value)
        assert "redis://default:***@127.0.0.1:" in str(info.value)
        right = make_store(server.url.replace("redis://", f"redis://:{PASSWORD}@"), "x:")
        right.ping()
        assert right.url == f"redis://:***@127.0.0.1:{server.port}/0"
        wrong.close()
        right.close()


def test_mask_url() -> None:
    assert mask_url(f"redis://:{PASSWORD}@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url(f"rediss://user:{PASSWORD}@h/1") == "rediss://user:***@h/1"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert PASSWORD not in mask_url(f"redis://:{PASSWORD}@h:notaport/0")


def test_bad_url_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        make_client(f"http://:{PASSWORD}@h:6379/0")
    assert PASSWORD not in str(info.value)


def test_client_must_decode_responses(redis_url: str) -> None:
    import redis

    with pytest.raises(ValueError, match="decode_responses"):
        StateStore(redis.Redis.from_url(redis_url))


def test_shared_server_is_durable(store: StateStore) -> None:
    assert store.check_durability() == []


def test_durability_flags_no_persistence_and_eviction(tmp_path: Path) -> None:
    unsafe = EmbeddedRedis(
        tmp_path / "unsafe",
        appendonly=False,
        extra_args=("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"),
    )
    with unsafe:
        store = make_store(unsafe.url, "x:")
        problems = store.check_durability()
        assert len(problems) == 2
        assert "persistence is off" in problems[0]
        assert "allkeys-lru" in problems[1]

        # RDB-only loses what came since the last snapshot; an eviction policy evicts as soon
        # as someone sets a limit, so it is refused even without one
        store.client.config_set("maxmemory", 0)
        store.client.config_set("save", "3600 1")
        problems = store.check_durability()
        assert len(problems) == 2
        assert "only RDB snapshots" in problems[0] and "3600 1" in problems[0]
        assert "allkeys-lru" in problems[1] and "no maxmemory yet" in problems[1]
        store.client.config_set("maxmemory-policy", "volatile-ttl")
        store.client.config_set("appendonly", "yes")
        assert ["volatile-ttl" in p for p in store.check_durability()] == [True]
        store.client.config_set("maxmemory-policy", "noeviction")
        assert store.check_durability() == []
        store.client.config_set("appendfsync", "no")
        (problem,) = store.check_durability()
        assert "appendfsync is no" in problem
        store.client.config_set("appendfsync", "always")
        assert store.check_durability() == []
        store.close()

"""WAIT for a replica after fence increments and step claims, against a real replica."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from supervisor.errors import RedisUnavailable
from supervisor.redis_server import EmbeddedRedis
from supervisor.state import StateStore
from tests.support.fixtures import make_store


def wait_until(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    """A primary and one replica of it, both real embedded valkey servers."""
    # diskless sync at once: the default waits 5 s for more replicas to arrive
    primary = EmbeddedRedis(tmp_path / "primary", extra_args=("--repl-diskless-sync-delay", "0"))
    primary.start()
    replica = EmbeddedRedis(
        tmp_path / "replica", extra_args=("--replicaof", "127.0.0.1", str(primary.port))
    )
    try:
        replica.start()
        check = redis.Redis.from_url(primary.url)
        wait_until(lambda: int(check.info("replication")["connected_slaves"]) == 1)
        wait_until(
            lambda: (
                redis.Redis.from_url(replica.url).info("replication")["master_link_status"] == "up"
            )
        )
        check.close()
        yield primary, replica
    finally:
        if replica.pid:
            os.kill(replica.pid, signal.SIGCONT)
        replica.stop()
        primary.stop()


def wait_calls(store: StateStore) -> int:
    stats = store.client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


def test_fence_and_claim_reach_the_replica_before_returning(
    pair: tuple[EmbeddedRedis, EmbeddedRedis],
) -> None:
    primary, replica = pair
    store = make_store(primary.url, "r:", wait_timeout_s=2)
    mirror = redis.Redis.from_url(replica.url, decode_responses=True)
    lease = store.leases.acquire("gw", "agent:a", "w1", 30_000)
    assert lease is not None
    # WAIT returned: the replica has the fence and the lease already, no polling needed
    assert int(mirror.get(store.keys.fence) or 0) == lease.token
    assert mirror.get(lease.redis_key) == lease.value
    assert store.episodes.claim_step("rec-1", "reset", "w1").state == "new"
    assert mirror.get(store.keys.step_claim("rec-1", "reset")) == "started|w1"
    assert wait_calls(store) >= 2


def test_a_replica_that_does_not_acknowledge_stops_the_action(
    pair: tuple[EmbeddedRedis, EmbeddedRedis],
) -> None:
    primary, replica = pair
    store = make_store(primary.url, "r:", wait_timeout_s=0.3)
    assert replica.pid is not None
    os.kill(replica.pid, signal.SIGSTOP)  # still connected, acknowledges nothing
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable, match=r"0 of 1 replica"):
            store.leases.acquire("gw", "agent:b", "w1", 30_000)
        assert time.monotonic() - started < 2.0  # bounded by the WAIT timeout
        # the lease a failover could forget was given back
        assert store.leases.holder("gw", "agent:b") is None
        with pytest.raises(RedisUnavailable, match="step claim"):
            store.episodes.claim_step("rec-2", "reset", "w1")
        assert store.client.get(store.keys.step_claim("rec-2", "reset")) is None
    finally:
        os.kill(replica.pid, signal.SIGCONT)
    lease = store.leases.acquire("gw", "agent:b", "w1", 30_000)
    assert lease is not None


def test_wait_can_be_turned_off_and_is_skipped_without_replicas(
    pair: tuple[EmbeddedRedis, EmbeddedRedis], tmp_path: Path
) -> None:
    primary, replica = pair
    assert replica.pid is not None
    os.kill(replica.pid, signal.SIGSTOP)
    try:
        off = make_store(primary.url, "r:", wait_replicas=0)
        assert off.leases.acquire("gw", "agent:c", "w1", 30_000) is not None
    finally:
        os.kill(replica.pid, signal.SIGCONT)
    with EmbeddedRedis(tmp_path / "alone") as alone:
        store = make_store(alone.url, "r:")
        assert store.leases.acquire("gw", "agent:d", "w1", 30_000) is not None
        assert store.episodes.claim_step("rec-3", "reset", "w1").state == "new"
        assert wait_calls(store) == 0

"""The audit stream: round trip, paging, capping, and surviving a hard server restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.errors import RedisUnavailable
from supervisor.redis_server import EmbeddedRedis
from supervisor.state import AuditRecord, StateStore
from tests.state.conftest import free_port
from tests.support.fixtures import make_store

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000


def rec(i: int, **extra: object) -> AuditRecord:
    return AuditRecord(ts_ms=T0 + i, gateway="gw", step="scan", outcome=f"ok-{i}", **extra)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field(store: StateStore) -> None:
    full = AuditRecord(
        ts_ms=T0,
        gateway="gw-1",
        key="agent:main:telegram:group:-100",
        verdict="zombie",
        step="abort",
        outcome="done",
        fencing_token=42,
        duration_ms=12.5,
        detail="reset lane — ✓",
        dry_run=False,
        recovery_id="r-1",
    )
    minimal = AuditRecord(ts_ms=T0 + 1, gateway="gw-1", step="scan", outcome="skipped")
    first_id = store.audit.append(full)
    store.audit.append(minimal)
    back = store.audit.read(10)
    assert [r.model_dump() for r in back] == [full.model_dump(), minimal.model_dump()]
    assert back[0].entry_id == first_id
    assert back[0].dry_run is False
    assert back[1].dry_run is None
    raw = store.client.xrange(store.keys.audit)
    assert raw[0][1]["dry_run"] == "false"
    assert "fencing_token" not in raw[1][1]


def test_read_is_oldest_first_and_pages_by_id(store: StateStore) -> None:
    for i in range(7):
        store.audit.append(rec(i))
    page1 = store.audit.read(3)
    page2 = store.audit.read(3, since_id=page1[-1].entry_id)
    page3 = store.audit.read(3, since_id=page2[-1].entry_id)
    outcomes = [r.outcome for r in page1 + page2 + page3]
    assert outcomes == [f"ok-{i}" for i in range(7)]
    assert store.audit.read(3, since_id=page3[-1].entry_id) == []
    assert [r.outcome for r in store.audit.tail(2)] == ["ok-5", "ok-6"]
    assert store.audit.length() == 7


def test_exact_maxlen_caps_the_stream(redis_url: str, prefix: str) -> None:
    store = make_store(redis_url, prefix, audit_maxlen=5, audit_approximate=False)
    try:
        for i in range(12):
            store.audit.append(rec(i))
        assert store.audit.length() == 5
        assert [r.outcome for r in store.audit.read(100)] == [f"ok-{i}" for i in range(7, 12)]
    finally:
        store.client.delete(store.keys.audit)
        store.close()


def test_approximate_maxlen_trims_whole_nodes(redis_url: str, prefix: str) -> None:
    store = make_store(redis_url, prefix, audit_maxlen=10)
    try:
        for i in range(350):
            store.audit.append(rec(i))
        # valkey trims whole 100-entry nodes: at least maxlen kept, at most a node more
        assert 10 <= store.audit.length() <= 110
        assert store.audit.tail(1)[0].outcome == "ok-349"
    finally:
        store.client.delete(store.keys.audit)
        store.close()


def test_append_raises_only_redis_unavailable(store: StateStore) -> None:
    dead = make_store(f"redis://127.0.0.1:{free_port()}/0", "x:")
    with pytest.raises(RedisUnavailable, match="cannot reach Redis"):
        dead.audit.append(rec(0))
    # even a foreign key of the wrong type is "not written" to the caller
    store.client.set(store.keys.audit, "not a stream")
    with pytest.raises(RedisUnavailable, match="WRONGTYPE"):
        store.audit.append(rec(0))


def test_records_leases_and_fence_survive_a_hard_kill(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "valkey", appendonly=True)
    server.start()
    try:
        store = make_store(server.url, "ls:")
        for i in range(20):
            store.audit.append(rec(i))
        lease = store.leases.acquire("gw", "agent:main:main", "w1", 60_000)
        assert lease is not None
        store.attempts.record_attempt("gw", "k", "s", now_ms=T0, next_not_before_ms=T0 + 5)
        port = server.port

        server.kill_hard()
        with pytest.raises(RedisUnavailable):
            store.ping()
        server.restart()
        assert server.port == port

        # the same client reconnects by itself once the server is back
        store.ping()
        assert [r.outcome for r in store.audit.read(100)] == [f"ok-{i}" for i in range(20)]
        assert store.leases.check(lease)
        state = store.attempts.get("gw", "k", "s")
        assert state is not None
        assert state.count == 1
        # the fence went on from where it was: tokens never repeat across a restart
        other = store.leases.acquire("gw", "other", "w2", 60_000)
        assert other is not None
        assert other.token == lease.token + 1
        # scripts are loaded again after the restart emptied the script cache
        assert store.leases.release(other)
        store.close()
    finally:
        server.stop()

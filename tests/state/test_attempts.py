"""Attempt counters, their TTL and the escalated marker, against a real valkey-server."""

from __future__ import annotations

import threading

import pytest

from supervisor.state import StateStore
from supervisor.state.attempts import MAX_ERROR_CHARS

pytestmark = pytest.mark.integration

GW, KEY, SID = "gw", "agent:main:main", "3f2c-sid"
T0 = 1_790_000_000_000


def test_attempts_increment_and_clear(store: StateStore) -> None:
    assert store.attempts.get(GW, KEY, SID) is None
    n = store.attempts.record_attempt(GW, KEY, SID, now_ms=T0, next_not_before_ms=T0 + 10_000)
    assert n == 1
    n = store.attempts.record_attempt(
        GW, KEY, SID, now_ms=T0 + 20_000, next_not_before_ms=T0 + 60_000, error="timeout"
    )
    assert n == 2
    state = store.attempts.get(GW, KEY, SID)
    assert state is not None
    assert state.count == 2
    assert state.first_seen_ms == T0
    assert state.last_attempt_ms == T0 + 20_000
    assert state.next_not_before_ms == T0 + 60_000
    assert state.last_error == "timeout"
    assert not state.due(T0 + 59_999)
    assert state.due(T0 + 60_000)

    # no error given: the previous one stays
    store.attempts.record_attempt(GW, KEY, SID, now_ms=T0 + 70_000, next_not_before_ms=T0 + 1)
    state = store.attempts.get(GW, KEY, SID)
    assert state is not None
    assert (state.count, state.last_error) == (3, "timeout")

    store.attempts.clear(GW, KEY, SID)
    assert store.attempts.get(GW, KEY, SID) is None
    assert store.attempts.record_attempt(GW, KEY, SID, now_ms=T0, next_not_before_ms=T0) == 1


def test_counters_are_per_session_id(store: StateStore) -> None:
    store.attempts.record_attempt(GW, KEY, SID, now_ms=T0, next_not_before_ms=T0)
    store.attempts.record_attempt(GW, KEY, SID, now_ms=T0, next_not_before_ms=T0)
    assert store.attempts.record_attempt(GW, KEY, "new-sid", now_ms=T0, next_not_before_ms=T0) == 1


def test_counter_has_a_ttl_renewed_by_each_attempt(redis_url: str, prefix: str) -> None:
    from tests.support.fixtures import delete_prefix, make_store

    store = make_store(redis_url, prefix, counter_ttl_s=3600)
    try:
        store.attempts.record_attempt(GW, KEY, SID, now_ms=T0, next_not_before_ms=T0)
        store.client.expire(store.keys.attempts(GW, KEY, SID), 10)
        store.attempts.record_attempt(GW, KEY, SID, now_ms=T0, next_not_before_ms=T0)
        ttl = store.attempts.ttl_s(GW, KEY, SID)
        assert ttl is not None
        assert 3590 <= ttl <= 3600
        assert store.attempts.ttl_s(GW, KEY, "none") is None
    finally:
        delete_prefix(store)
        store.close()


def test_default_ttl_is_seven_days(store: StateStore) -> None:
    store.attempts.record_attempt(GW, KEY, SID, now_ms=T0, next_not_before_ms=T0)
    ttl = store.attempts.ttl_s(GW, KEY, SID)
    assert ttl is not None
    assert 7 * 86400 - 10 <= ttl <= 7 * 86400


def test_concurrent_attempts_are_all_counted(store: StateStore) -> None:
    def bump() -> None:
        for _ in range(25):
            store.attempts.record_attempt(GW, KEY, SID, now_ms=T0, next_not_before_ms=T0)

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = store.attempts.get(GW, KEY, SID)
    assert state is not None
    assert state.count == 200


def test_record_error_only_on_an_existing_counter(store: StateStore) -> None:
    assert not store.attempts.record_error(GW, KEY, SID, "boom")
    assert store.client.exists(store.keys.attempts(GW, KEY, SID)) == 0
    store.attempts.record_attempt(GW, KEY, SID, now_ms=T0, next_not_before_ms=T0)
    assert store.attempts.record_error(GW, KEY, SID, "x" * 5000)
    state = store.attempts.get(GW, KEY, SID)
    assert state is not None
    assert state.last_error == "x" * MAX_ERROR_CHARS


def test_escalated_marker(store: StateStore) -> None:
    assert not store.attempts.is_escalated(GW, KEY, SID)
    assert store.attempts.escalation(GW, KEY, SID) is None
    assert store.attempts.mark_escalated(GW, KEY, SID, now_ms=T0, reason="5 attempts failed")
    # only the first caller sees True: exactly one notification
    assert not store.attempts.mark_escalated(GW, KEY, SID, now_ms=T0 + 1, reason="again")
    assert store.attempts.is_escalated(GW, KEY, SID)
    assert not store.attempts.is_escalated(GW, KEY, "other-sid")
    escalation = store.attempts.escalation(GW, KEY, SID)
    assert escalation is not None
    assert (escalation.ts_ms, escalation.reason) == (T0, "5 attempts failed")
    assert store.client.ttl(store.keys.escalated(GW, KEY, SID)) > 86400

    store.attempts.clear(GW, KEY, SID)
    assert store.attempts.is_escalated(GW, KEY, SID)
    assert store.attempts.clear_escalation(GW, KEY, SID)
    assert not store.attempts.is_escalated(GW, KEY, SID)
    assert not store.attempts.clear_escalation(GW, KEY, SID)

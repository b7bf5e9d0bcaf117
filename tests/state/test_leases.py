"""Leases with fencing tokens, against a real valkey-server."""

from __future__ import annotations

import threading
import time

import pytest

from supervisor.errors import LeaseLost
from supervisor.state import StateStore

pytestmark = pytest.mark.integration

KEY = "agent:main:telegram:group:-100"


def test_acquire_is_exclusive(store: StateStore) -> None:
    first = store.leases.acquire("gw", KEY, "worker-a", 5_000)
    assert first is not None
    assert store.leases.acquire("gw", KEY, "worker-b", 5_000) is None
    # the same owner name does not get it twice either: a redelivered task is a new attempt
    assert store.leases.acquire("gw", KEY, "worker-a", 5_000) is None
    assert store.leases.check(first)
    holder = store.leases.holder("gw", KEY)
    assert holder is not None
    assert (holder.token, holder.owner) == (first.token, "worker-a")
    assert 0 < holder.ttl_ms <= 5_000


def test_other_sessions_and_gateways_are_independent(store: StateStore) -> None:
    assert store.leases.acquire("gw", KEY, "a", 5_000) is not None
    assert store.leases.acquire("gw", KEY + ":x", "a", 5_000) is not None
    assert store.leases.acquire("gw2", KEY, "a", 5_000) is not None


def test_twenty_concurrent_acquirers_one_winner(store: StateStore) -> None:
    barrier = threading.Barrier(20)
    results: list[object] = [None] * 20

    def race(i: int) -> None:
        barrier.wait()
        results[i] = store.leases.acquire("gw", KEY, f"worker-{i}", 5_000)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    # losers did not burn fencing tokens
    assert int(store.client.get(store.keys.fence) or 0) == 1


def test_fencing_tokens_strictly_increase(store: StateStore) -> None:
    tokens = []
    for i in range(10):
        lease = store.leases.acquire("gw", f"k{i % 3}", f"owner-{i}", 5_000)
        assert lease is not None
        tokens.append(lease.token)
        assert store.leases.release(lease)
    assert tokens == sorted(set(tokens))
    assert len(tokens) == 10


def test_concurrent_acquirers_on_many_sessions_get_distinct_tokens(store: StateStore) -> None:
    barrier = threading.Barrier(20)
    tokens: list[int] = []
    lock = threading.Lock()

    def take(i: int) -> None:
        barrier.wait()
        lease = store.leases.acquire("gw", f"session:{i}", "w", 5_000)
        assert lease is not None
        with lock:
            tokens.append(lease.token)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(tokens) == list(range(1, 21))


def test_expired_lease_is_lost_to_its_old_holder(store: StateStore) -> None:
    old = store.leases.acquire("gw", KEY, "slow-worker", 80)
    assert old is not None
    assert old.remaining_s() <= 0.08
    time.sleep(0.2)
    assert old.remaining_s() == 0
    assert not store.leases.check(old)
    with pytest.raises(LeaseLost, match="fencing token"):
        store.leases.ensure(old)
    with pytest.raises(LeaseLost):
        store.leases.extend(old, 5_000)
    assert not store.leases.release(old)

    new = store.leases.acquire("gw", KEY, "fast-worker", 5_000)
    assert new is not None
    assert new.token > old.token
    # the old holder still cannot touch the new holder's lease
    assert not store.leases.check(old)
    assert not store.leases.release(old)
    with pytest.raises(LeaseLost):
        store.leases.extend(old, 5_000)
    assert store.leases.check(new)


def test_same_owner_name_with_an_old_token_is_not_the_holder(store: StateStore) -> None:
    old = store.leases.acquire("gw", KEY, "worker", 80)
    assert old is not None
    time.sleep(0.2)
    new = store.leases.acquire("gw", KEY, "worker", 5_000)
    assert new is not None
    assert not store.leases.check(old)
    assert not store.leases.release(old)
    assert store.leases.check(new)


def test_release_by_non_holder_does_nothing(store: StateStore) -> None:
    mine = store.leases.acquire("gw", KEY, "me", 5_000)
    assert mine is not None
    other = store.leases.acquire("gw", "other-key", "them", 5_000)
    assert other is not None
    forged = type(mine)(**{**mine.__dict__, "owner": "them"})
    assert not store.leases.release(forged)
    assert store.leases.check(mine)
    assert store.leases.release(mine)
    assert not store.leases.check(mine)
    assert not store.leases.release(mine)
    assert store.leases.holder("gw", KEY) is None


def test_extend_keeps_the_lease_past_its_first_ttl(store: StateStore) -> None:
    # each gap well inside the TTL (a loaded machine oversleeps), all of them past it
    lease = store.leases.acquire("gw", KEY, "me", 1000)
    assert lease is not None
    for _ in range(4):
        time.sleep(0.35)
        lease = store.leases.extend(lease, 1000)
    assert store.leases.check(lease)
    lease = store.leases.extend(lease, 10_000)
    holder = store.leases.holder("gw", KEY)
    assert holder is not None
    assert holder.ttl_ms > 9_000


@pytest.mark.parametrize("ttl", [0, -5, 1.5, True])
def test_ttl_must_be_positive_whole_ms(store: StateStore, ttl: object) -> None:
    with pytest.raises(ValueError):
        store.leases.acquire("gw", KEY, "me", ttl)  # type: ignore[arg-type]

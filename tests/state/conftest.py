"""One real embedded valkey-server for the whole session; each test gets its own key prefix.

Tests never flush the server: each works under a unique prefix and deletes only its own keys,
so they cannot see each other's leases, counters, fence or audit stream.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.redis_server import EmbeddedRedis
from supervisor.state import StateStore


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("valkey-shared"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}:"


def make_store(url: str, prefix: str, **kwargs: Any) -> StateStore:
    """A store with short waits, so a test against a dead server fails fast."""
    return StateStore.from_url(
        url, prefix=prefix, connect_timeout_s=1, socket_timeout_s=2, **kwargs
    )


def delete_prefix(store: StateStore) -> None:
    keys = list(store.client.scan_iter(match=store.keys.all_keys(), count=500))
    if keys:
        store.client.delete(*keys)


@pytest.fixture
def store(redis_url: str, prefix: str) -> Iterator[StateStore]:
    state = make_store(redis_url, prefix)
    try:
        yield state
    finally:
        delete_prefix(state)
        state.close()


def free_port() -> int:
    """A loopback port nothing listens on (a tiny race, fine for tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def own_server_dir(tmp_path: Path) -> Path:
    return tmp_path / "valkey"

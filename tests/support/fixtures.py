"""The fixtures every test directory shares, registered once by `tests/conftest.py`.

* Redis: one real embedded valkey-server for the whole session (`redis_server`, `redis_url`);
  each test works under its own key prefix (`prefix`) and deletes only its own keys, so tests
  never flush the server and cannot see each other's leases, counters, fence or audit stream.
  `store` is a `StateStore` on that prefix; `incidents` and `silences` are its parts.
* Simulated gateways: `sim` runs on the test's asyncio loop (async tests), `threaded_sim` on a
  thread of its own (sync code such as the engine, which runs its own loops).
* A device identity (one per session), a state directory per test.
* Paging: `http`, a loopback HTTP server that records requests and answers from a script, and
  `full_config`, every provider kind pointed at it (helpers in `tests.support.paging`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.escalation.config import PagingConfig
from supervisor.fleet import GatewaySpec, parse_fleet
from supervisor.gateway.identity import DeviceIdentity, load_or_create_identity
from supervisor.redis_server import EmbeddedRedis
from supervisor.simulator import SimulatorServer
from supervisor.state import StateStore
from supervisor.state.incidents import Incidents
from supervisor.state.silences import Silences
from tests.support.paging import FULL_CONFIG, Recorder, environ, load, serve

#: a canary: tests assert it never shows up in errors, output or logs
TOKEN = "canary-gw-token-7f3a9c"


def spec_for(url: str, name: str = "gw", token: str = TOKEN, **policy: Any) -> GatewaySpec:
    """A validated GatewaySpec, built through the fleet-file parser like a real one."""
    extra = "".join(f"{k} = {v!r}\n" for k, v in policy.items())
    text = f'[[gateways]]\nname = "{name}"\nurl = "{url}"\ntoken_env = "TOKEN"\n{extra}'
    return parse_fleet(text, "test-fleet.toml", {"TOKEN": token}).gateways[0]


# -- Redis -----------------------------------------------------------------------------------


def make_store(url: str, prefix: str, **kwargs: Any) -> StateStore:
    """A store with short waits, so a test against a dead server fails fast."""
    return StateStore.from_url(
        url, prefix=prefix, connect_timeout_s=1, socket_timeout_s=2, **kwargs
    )


def delete_prefix(store: StateStore) -> None:
    keys = list(store.client.scan_iter(match=store.keys.all_keys(), count=500))
    if keys:
        store.client.delete(*keys)


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


@pytest.fixture
def store(redis_url: str, prefix: str) -> Iterator[StateStore]:
    state = make_store(redis_url, prefix)
    try:
        yield state
    finally:
        delete_prefix(state)
        state.close()


@pytest.fixture
def incidents(store: StateStore) -> Incidents:
    return store.incidents


@pytest.fixture
def silences(store: StateStore) -> Silences:
    return store.silences


@pytest.fixture
def own_server_dir(tmp_path: Path) -> Path:
    return tmp_path / "valkey"


# -- gateways --------------------------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def threaded_sim() -> Iterator[SimulatorServer]:
    server = SimulatorServer()
    with server.running():
        yield server


@pytest.fixture(scope="session")
def identity(tmp_path_factory: pytest.TempPathFactory) -> DeviceIdentity:
    return load_or_create_identity(tmp_path_factory.mktemp("state"))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


# -- paging ----------------------------------------------------------------------------------


@pytest.fixture
def http() -> Iterator[Recorder]:
    with serve() as recorder:
        yield recorder


@pytest.fixture
def full_config(http: Recorder) -> PagingConfig:
    return load(FULL_CONFIG.format(base=http.url), environ(http))

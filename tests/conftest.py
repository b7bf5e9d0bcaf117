"""Fixtures shared by all tests: simulated gateways, fleet specs, a device identity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.fleet import GatewaySpec, parse_fleet
from supervisor.gateway.identity import DeviceIdentity, load_or_create_identity
from supervisor.simulator import SimulatorServer

#: a canary: tests assert it never shows up in errors, output or logs
TOKEN = "canary-gw-token-7f3a9c"


def spec_for(url: str, name: str = "gw", token: str = TOKEN, **policy: Any) -> GatewaySpec:
    """A validated GatewaySpec, built through the fleet-file parser like a real one."""
    extra = "".join(f"{k} = {v!r}\n" for k, v in policy.items())
    text = f'[[gateways]]\nname = "{name}"\nurl = "{url}"\ntoken_env = "TOKEN"\n{extra}'
    return parse_fleet(text, "test-fleet.toml", {"TOKEN": token}).gateways[0]


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    server = SimulatorServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="session")
def identity(tmp_path_factory: pytest.TempPathFactory) -> DeviceIdentity:
    return load_or_create_identity(tmp_path_factory.mktemp("state"))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"

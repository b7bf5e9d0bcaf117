"""The gateway client against the simulator, for both versions and every error."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from supervisor.core.rows import SessionRow
from supervisor.errors import (
    DeviceNotPaired,
    GatewayCallError,
    GatewayError,
    GatewayOverloaded,
    GatewayTimeout,
    GatewayUnreachable,
    MethodMissing,
    MissingScope,
    ProtocolError,
    TokenMismatch,
)
from supervisor.gateway.client import GatewayClient, map_gateway_error
from supervisor.gateway.identity import DeviceIdentity, load_or_create_identity
from supervisor.gateway.models import ALL_SCOPES
from supervisor.simulator import FaultMode, SimGateway, SimulatorServer
from tests.support.fixtures import TOKEN, spec_for

VERSIONS = ["2026.9.6", "2026.3.24"]


def add(sim: SimulatorServer, version: str = "2026.9.6", **kw: object) -> SimGateway:
    return sim.add(SimGateway("gw", version=version, token=TOKEN, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("version", VERSIONS)
async def test_handshake_and_listing(
    sim: SimulatorServer, identity: DeviceIdentity, version: str
) -> None:
    gw = add(sim, version)
    gw.add_zombie("agent:dev:z")
    gw.add_live("agent:dev:l")
    async with GatewayClient(spec_for(sim.url("gw")), identity) as client:
        hello = client.hello
        assert hello is not None
        assert hello.protocol == (4 if version == "2026.9.6" else 3)
        assert hello.boot_time_ms == pytest.approx(gw.boot_ms, abs=1500)
        assert (hello.boot_id is not None) == (version == "2026.9.6")
        assert hello.methods and "sessions.list" in hello.methods
        scopes = await client.verify_scopes(
            ALL_SCOPES if version == "2026.9.6" else ("operator.read",)
        )
        assert "operator.read" in scopes
        rows = await client.list_sessions()
        assert {r.key for r in rows if isinstance(r, SessionRow)} == {"agent:dev:z", "agent:dev:l"}
        assert client.events_seen >= 1  # the tick event interleaved after hello was tolerated
    assert gw.mutations == []


async def test_3_24_without_a_device_connects_but_is_told_to_pair(sim: SimulatorServer) -> None:
    add(sim, "2026.3.24")
    async with GatewayClient(spec_for(sim.url("gw")), None) as client:
        assert client.hello is not None and client.hello.scopes is None
        with pytest.raises(DeviceNotPaired, match="devices approve"):
            await client.verify_scopes()


async def test_3_24_unapproved_device_is_told_to_pair(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    add(sim, "2026.3.24", auto_approve_devices=False)
    async with GatewayClient(spec_for(sim.url("gw")), identity) as client:
        with pytest.raises(DeviceNotPaired):
            await client.verify_scopes()


async def test_9_6_wrong_client_id_gets_empty_scopes_and_fails_loudly(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    add(sim, "2026.9.6", auto_approve_devices=False)
    spec = spec_for(sim.url("gw"), client_id="my-tool", client_mode="ui")
    async with GatewayClient(spec, identity) as client:
        assert client.hello is not None and client.hello.scopes == ()
        with pytest.raises(MissingScope, match="granted no scopes") as info:
            await client.verify_scopes()
        assert info.value.missing == ["operator.read"]


async def test_missing_admin_scope_is_named(sim: SimulatorServer, identity: DeviceIdentity) -> None:
    add(sim, "2026.9.6", grant_admin=False)
    async with GatewayClient(spec_for(sim.url("gw")), identity) as client:
        with pytest.raises(MissingScope) as info:
            await client.verify_scopes(ALL_SCOPES)
        assert info.value.missing == ["operator.admin"]
        # and a call needing it is refused by the gateway with the same mapped error
        client.hello.__dict__["methods"] = None  # let the call through to the gateway
        with pytest.raises(MissingScope, match=r"operator\.admin"):
            await client.call("sessions.reset", {"key": "agent:dev:x"})


async def test_no_token_no_device_is_not_paired(sim: SimulatorServer) -> None:
    from pydantic import SecretStr

    add(sim)
    spec = spec_for(sim.url("gw")).model_copy(update={"token": SecretStr("")})
    with pytest.raises(DeviceNotPaired, match="device identity required"):
        await GatewayClient(spec, None).connect()


@pytest.mark.parametrize("version", VERSIONS)
async def test_token_mismatch(sim: SimulatorServer, identity: DeviceIdentity, version: str) -> None:
    add(sim, version)
    with pytest.raises(TokenMismatch) as info:
        await GatewayClient(spec_for(sim.url("gw"), token="wrong-token-abc"), identity).connect()
    assert "wrong-token-abc" not in str(info.value)
    assert "'gw'" in str(info.value)


async def test_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GatewayUnreachable, match="cannot connect"):
        await GatewayClient(spec_for(f"ws://127.0.0.1:{port}"), None).connect()


async def test_hang_before_challenge_times_out(sim: SimulatorServer) -> None:
    add(sim).fault = FaultMode.HANG
    with pytest.raises(GatewayTimeout, match=r"handshake within 0\.3s"):
        await GatewayClient(spec_for(sim.url("gw"), connect_timeout=0.3), None).connect()


async def test_hang_on_calls_times_out(sim: SimulatorServer, identity: DeviceIdentity) -> None:
    add(sim).fault = FaultMode.HANG_CALLS
    async with GatewayClient(spec_for(sim.url("gw"), call_timeout=0.3), identity) as client:
        with pytest.raises(GatewayTimeout, match=r"sessions.list: no answer within 0.3s"):
            await client.list_sessions()


async def test_slow_answers_within_the_timeout_are_fine(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    add(sim).delay_s = 0.2
    async with GatewayClient(spec_for(sim.url("gw"), call_timeout=2), identity) as client:
        assert await client.list_sessions() == []


async def test_close_during_connect_is_overload_not_auth(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    add(sim).fault = FaultMode.OVERLOAD
    with pytest.raises(GatewayOverloaded) as info:
        await GatewayClient(spec_for(sim.url("gw")), identity).connect()
    assert info.value.retryable


async def test_drop_is_unreachable(sim: SimulatorServer, identity: DeviceIdentity) -> None:
    add(sim).fault = FaultMode.DROP
    with pytest.raises(GatewayUnreachable):
        await GatewayClient(spec_for(sim.url("gw")), identity).connect()


async def test_garbage_frame_is_a_protocol_error(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    add(sim).fault = FaultMode.GARBAGE
    async with GatewayClient(spec_for(sim.url("gw")), identity) as client:
        with pytest.raises(ProtocolError, match="not JSON"):
            await client.list_sessions()
        with pytest.raises(ProtocolError):  # the connection stays failed, no hang
            await client.list_sessions()


async def test_oversized_frame_is_refused(sim: SimulatorServer, identity: DeviceIdentity) -> None:
    add(sim).fault = FaultMode.OVERSIZED
    async with GatewayClient(spec_for(sim.url("gw"), max_frame_bytes=65536), identity) as client:
        with pytest.raises(ProtocolError, match="max_frame_bytes"):
            await client.list_sessions()


async def test_method_missing(sim: SimulatorServer, identity: DeviceIdentity) -> None:
    add(sim, "2026.3.24")
    async with GatewayClient(spec_for(sim.url("gw")), identity) as client:
        with pytest.raises(MethodMissing, match=r"sessions\.get"):
            await client.call("sessions.get", {"key": "k"})
        assert "sessions.get" not in sim.gateways["gw"].calls  # refused before sending


def test_error_mapping_of_ok_false_answers() -> None:
    assert isinstance(
        map_gateway_error("g", "x", {"code": "INVALID_REQUEST", "message": "unknown method: x"}),
        MethodMissing,
    )
    changed = map_gateway_error(
        "g",
        "sessions.reset",
        {
            "code": "INVALID_REQUEST",
            "message": "session changed",
            "details": {"reason": "session-changed"},
        },
    )
    assert isinstance(changed, GatewayCallError) and changed.reason == "session-changed"
    assert isinstance(
        map_gateway_error("g", "connect", {"code": "NOT_PAIRED", "message": "pairing required"}),
        DeviceNotPaired,
    )
    assert isinstance(map_gateway_error("g", "connect", "nonsense"), ProtocolError)


async def test_no_error_ever_carries_the_token(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    gw = add(sim)
    seen: list[GatewayError] = []
    for fault in FaultMode:
        gw.fault = fault
        try:
            async with GatewayClient(
                spec_for(
                    sim.url("gw"), connect_timeout=0.3, call_timeout=0.3, max_frame_bytes=65536
                ),
                identity,
            ) as client:
                await client.list_sessions()
        except GatewayError as exc:
            seen.append(exc)
    assert len(seen) >= 6
    for exc in seen:
        text = f"{exc} {exc!r} {exc.__cause__!r}"
        assert TOKEN not in text


def test_identity_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    first = load_or_create_identity(tmp_path)
    second = load_or_create_identity(tmp_path)
    assert first.device_id == second.device_id
    key_file = next(tmp_path.iterdir())
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.device_id[:12] in repr(first) and "PRIVATE" not in repr(first)


def test_identity_readable_by_others_is_refused(tmp_path: Path) -> None:
    from supervisor.errors import ConfigError

    load_or_create_identity(tmp_path)
    key_file = next(tmp_path.iterdir())
    os.chmod(key_file, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_identity(tmp_path)


@pytest.mark.parametrize("version", VERSIONS)
async def test_listing_pages_through_every_row(
    sim: SimulatorServer, identity: DeviceIdentity, version: str
) -> None:
    gw = add(sim, version)
    for i in range(250):
        gw.add_idle(f"agent:main:s{i:03d}")
    async with GatewayClient(spec_for(sim.url("gw")), identity) as client:
        rows = await client.list_sessions()
    keys = [r.key for r in rows]
    assert len(keys) == 250 and len(set(keys)) == 250
    # 2026.9.6 answers 100 rows first, then 200 a page as asked: two calls; 2026.3.24 one
    assert gw.calls.count("sessions.list") == (2 if version == "2026.9.6" else 1)

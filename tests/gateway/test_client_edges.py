"""The client at the edges: no redirects, plain ws:// warned, hostile clocks, bounded listings."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from supervisor.core.detect import VerdictKind
from supervisor.errors import ProtocolError
from supervisor.gateway import client as client_module
from supervisor.gateway.client import GatewayClient
from supervisor.gateway.identity import DeviceIdentity
from supervisor.scan import look
from supervisor.simulator import SimGateway, SimulatorServer
from tests.support.fixtures import TOKEN, spec_for


class TokenTrap:
    """A WebSocket server that records every frame sent to it (where a redirect points)."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.connections = 0

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.send('{"type":"event","event":"connect.challenge","payload":{"nonce":"n"}}')
        async for message in ws:
            self.frames.append(str(message))


@pytest.fixture
async def redirect() -> AsyncIterator[tuple[str, TokenTrap]]:
    """(url of a server answering every upgrade with 302 to the trap, the trap)."""
    trap = TokenTrap()
    async with serve(trap.handler, "127.0.0.1", 0) as trap_server:
        trap_port = trap_server.sockets[0].getsockname()[1]

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 302 Found\r\n"
                + f"Location: ws://127.0.0.1:{trap_port}/\r\n".encode()
                + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            yield f"ws://127.0.0.1:{port}/", trap


async def test_a_redirect_is_a_protocol_error_and_sends_no_token(
    redirect: tuple[str, TokenTrap],
) -> None:
    url, trap = redirect
    spec = spec_for(url, connect_timeout="3s")
    with pytest.raises(ProtocolError, match="HTTP 302") as info:
        async with GatewayClient(spec, None):
            pass
    assert info.value.kind == "protocol"
    assert trap.connections == 0
    assert not any(TOKEN in frame for frame in trap.frames)
    report, _ = await look(spec, None)
    assert report.error_kind == "protocol"
    assert trap.connections == 0


async def test_plain_ws_to_another_host_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    client_module._warned_plain.clear()
    remote = spec_for("ws://192.0.2.1:9", name="far", connect_timeout="0.05s")
    local = spec_for("ws://127.0.0.1:9", name="near", connect_timeout="0.05s")
    with caplog.at_level(logging.WARNING, logger="supervisor.gateway.client"):
        for spec in (remote, remote, local, spec_for("ws://localhost:9", name="l2")):
            report, _ = await look(spec, None)
            assert report.error is not None
    warned = [r.getMessage() for r in caplog.records if "plain ws://" in r.getMessage()]
    assert len(warned) == 1
    assert "'far'" in warned[0]
    assert TOKEN not in caplog.text


HOSTILE_TS: list[object] = [10**400, math.inf, -math.inf, math.nan, "soon", True]
MIS_SCALED = ["micro", "seconds"]


@pytest.mark.parametrize("version", ["2026.3.24", "2026.9.6"])
@pytest.mark.parametrize("ts", [*HOSTILE_TS, *MIS_SCALED], ids=repr)
async def test_a_hostile_challenge_ts_leaves_the_clock_unknown(
    sim: SimulatorServer, identity: DeviceIdentity, version: str, ts: object
) -> None:
    gw = sim.add(SimGateway("gw", version=version, token=TOKEN))
    gw.add_live("agent:dev:live", age_s=60)  # 60 s into a live run: never a zombie
    gw.add_idle("agent:dev:idle")
    if ts == "micro":
        ts = int(gw.now_ms() * 1000)
    elif ts == "seconds":
        ts = int(gw.now_ms() / 1000)
    gw.challenge_ts = ts
    report, scan = await look(spec_for(sim.url("gw"), stale_after="0s"), identity)
    assert report.error is None, report.error
    assert scan is not None and not scan.hello.clock_known
    assert scan.hello.boot_time_ms is None
    verdicts = {v.key: v.kind for v in scan.verdicts}
    assert verdicts["agent:dev:live"] in {VerdictKind.UNKNOWN, VerdictKind.LIVE}
    assert verdicts["agent:dev:idle"] is VerdictKind.IDLE
    assert not any(v.needs_action for v in scan.verdicts)


@pytest.mark.parametrize("uptime", [10**400, math.inf, math.nan, -1, "1h", 10**15])
async def test_a_hostile_uptime_never_raises_or_makes_zombies(
    sim: SimulatorServer, identity: DeviceIdentity, uptime: object
) -> None:
    gw = sim.add(SimGateway("gw", version="2026.3.24", token=TOKEN))
    gw.add_live("agent:dev:live", age_s=60)
    gw.uptime_ms = uptime
    report, scan = await look(spec_for(sim.url("gw")), identity)
    assert report.error is None
    assert scan is not None and scan.hello.boot_time_ms is None
    assert [v.kind for v in scan.verdicts] == [VerdictKind.UNKNOWN]


async def test_a_sane_clock_still_finds_zombies(
    sim: SimulatorServer, identity: DeviceIdentity
) -> None:
    # the bound must not blind the scan: a gateway 10 minutes off is still believed
    gw = sim.add(SimGateway("gw", version="2026.3.24", token=TOKEN, clock_skew_s=600))
    gw.add_zombie("agent:dev:z")
    _, scan = await look(spec_for(sim.url("gw"), stale_after="0s"), identity)
    assert scan is not None and scan.hello.clock_known
    assert [v.kind for v in scan.verdicts] == [VerdictKind.ZOMBIE]


@pytest.mark.parametrize(
    ("policy", "words"),
    [({"max_sessions": 250}, "max_sessions"), ({"max_listing_bytes": 100_000}, "max_listing")],
)
async def test_an_oversized_listing_is_a_protocol_error(
    sim: SimulatorServer, identity: DeviceIdentity, policy: dict[str, Any], words: str
) -> None:
    gw = sim.add(SimGateway("gw", version="2026.9.6", token=TOKEN))
    for index in range(400):
        gw.add_idle(f"agent:dev:s{index}")
    report, scan = await look(spec_for(sim.url("gw"), **policy), identity)
    assert scan is None
    assert report.error_kind == "protocol"
    assert report.error is not None and words in report.error
    # the same listing within the bounds is fine
    report, scan = await look(spec_for(sim.url("gw")), identity)
    assert scan is not None and len(scan.verdicts) == 400


@pytest.mark.parametrize("ts", [math.nan, 10**400, "micro"], ids=repr)
async def test_an_unknown_clock_makes_no_zombie_from_a_guessed_age(
    sim: SimulatorServer, identity: DeviceIdentity, ts: object
) -> None:
    # the gateway runs 2 h behind us and its ts is useless: with the offset guessed as 0, a
    # lane quiet for 60 s would look quiet for 2 h, past stale_after
    gw = sim.add(SimGateway("gw", version="2026.9.6", token=TOKEN, clock_skew_s=-7200))
    gw.add_zombie("agent:dev:young", age_s=60)
    gw.challenge_ts = int(gw.now_ms() * 1000) if ts == "micro" else ts
    _, scan = await look(spec_for(sim.url("gw"), stale_after="20m"), identity)
    assert scan is not None and not scan.hello.clock_known
    assert [v.kind for v in scan.verdicts] == [VerdictKind.UNKNOWN]
    assert "clock is unknown" in scan.verdicts[0].reason

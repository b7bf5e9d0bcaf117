"""One read-only look at one gateway: connect, check scopes, list, classify.

Shared by `check` and the recovery engine's scan task, so both see sessions the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from supervisor.core.capabilities import Capabilities, Tri, decide
from supervisor.core.detect import GatewayView, Verdict, VerdictKind, classify_rows
from supervisor.core.lanes import LaneCounts, parse_lanes
from supervisor.core.rows import SessionRow, UnreadableRow
from supervisor.errors import GatewayError
from supervisor.fleet import GatewaySpec
from supervisor.gateway.client import GatewayClient
from supervisor.gateway.identity import DeviceIdentity
from supervisor.gateway.models import READ_SCOPE, Hello


class SessionReport(BaseModel):
    """One session as `check --json` prints it."""

    model_config = ConfigDict(frozen=True)

    key: str
    verdict: str
    reason: str
    age_s: float | None
    quiet_s: float | None
    session_id: str | None
    needs_action: bool
    #: held and zombie sessions: messages waiting behind the lane (None: unknown)
    waiting: int | None = None

    @classmethod
    def of(cls, v: Verdict) -> SessionReport:
        return cls(
            key=v.key,
            verdict=v.kind.value,
            reason=v.reason,
            age_s=v.age_s,
            quiet_s=v.quiet_s,
            session_id=v.session_id,
            needs_action=v.needs_action,
            waiting=v.waiting,
        )


class GatewayReport(BaseModel):
    """One gateway as `check --json` prints it."""

    model_config = ConfigDict(frozen=True)

    name: str
    url: str
    reachable: bool
    protocol: int | None = None
    server_version: str | None = None
    boot_id: str | None = None
    scopes: list[str] | None = None
    error: str | None = None
    error_kind: str | None = None
    duration_ms: float = 0.0
    #: yes/no/unknown per capability (`supervisor.core.capabilities`), None when not reached
    capabilities: dict[str, Any] | None = None
    #: messages waiting behind this gateway's held and zombie sessions (None: unknown)
    messages_waiting: int | None = None
    #: `diagnostics.lanes` counts (None: the gateway has none, or the call failed)
    lanes: dict[str, int] | None = None
    lanes_error: str | None = None
    sessions: list[SessionReport] = []

    @property
    def needs_action(self) -> bool:
        return any(s.needs_action for s in self.sessions)


@dataclass(frozen=True)
class GatewayScan:
    """What one scan learned: the hello and the verdicts (evidence kept for acting later)."""

    hello: Hello
    view: GatewayView
    verdicts: list[Verdict]
    lanes: LaneCounts | None = None
    lanes_error: str | None = None

    @property
    def capabilities(self) -> Capabilities:
        return self.view.caps

    @property
    def messages_waiting(self) -> int | None:
        """Messages waiting behind held and zombie lanes, summed; None unless every such lane
        says it and no row is unknown (an unknown row may hide a waiting message)."""
        if self.capabilities.counts_waiting is not Tri.YES:
            return None
        total = 0
        for v in self.verdicts:
            if v.kind is VerdictKind.UNKNOWN:
                return None
            if v.kind in _WAITING:
                if v.waiting is None:
                    return None
                total += v.waiting
        return total


_WAITING = frozenset({VerdictKind.HELD, VerdictKind.ZOMBIE, VerdictKind.ZOMBIE_PENDING})


def view_of(client: GatewayClient, rows: Sequence[SessionRow | UnreadableRow]) -> GatewayView:
    """The classifier's view of a gateway right after a listing."""
    hello = client.hello
    assert hello is not None
    caps = decide(
        protocol=hello.protocol,
        server_version=hello.server_version,
        methods=hello.methods,
        rows=rows,
    )
    return GatewayView(
        protocol=hello.protocol,
        now_ms=client.gateway_now_ms(),
        boot_time_ms=hello.boot_time_ms,
        capabilities=caps,
    )


#: verdicts that rest on the gateway's clock (a row's age or quiet time, or its boot time)
_NEEDS_CLOCK = frozenset(
    {VerdictKind.ZOMBIE, VerdictKind.ZOMBIE_PENDING, VerdictKind.LIVE_OVERDUE, VerdictKind.HELD}
)


def without_clock(verdicts: list[Verdict]) -> list[Verdict]:
    """The verdicts as they stand when the gateway's clock is unknown: every one that needs
    the clock becomes `unknown` (ages measured against a guessed clock would make false
    zombies or overdue runs)."""
    return [
        dataclasses.replace(
            v,
            kind=VerdictKind.UNKNOWN,
            reason=f"the gateway's clock is unknown (challenge ts out of range): {v.reason}",
            overdue=False,
        )
        if v.kind in _NEEDS_CLOCK
        else v
        for v in verdicts
    ]


async def read_lanes(client: GatewayClient) -> tuple[LaneCounts | None, str | None]:
    """One `diagnostics.lanes` call: its counts, or None and why. Never fails the scan."""
    try:
        return parse_lanes(await client.diagnostics_lanes()), None
    except GatewayError as exc:
        return None, f"{exc.kind}: {exc}"
    except ValueError as exc:
        return None, f"unreadable: {exc}"


async def scan_with(client: GatewayClient, *, lanes: bool = True) -> GatewayScan:
    """List and classify through an open client; `lanes`: also read `diagnostics.lanes` where
    the gateway has it (once per scan)."""
    assert client.hello is not None
    rows = await client.list_sessions()
    view = view_of(client, rows)
    verdicts = classify_rows(rows, gateway=view, policy=client.spec.policy)
    if not client.hello.clock_known:
        verdicts = without_clock(verdicts)
    counts, lanes_error = None, None
    if lanes and view.caps.diagnostics_lanes is Tri.YES:
        counts, lanes_error = await read_lanes(client)
    return GatewayScan(
        hello=client.hello, view=view, verdicts=verdicts, lanes=counts, lanes_error=lanes_error
    )


async def look(
    spec: GatewaySpec,
    identity: DeviceIdentity | None,
    *,
    clock: Callable[[], float] = time.time,
    lanes: bool = True,
) -> tuple[GatewayReport, GatewayScan | None]:
    """A read-only report for one gateway, and the scan behind it (None when it failed).

    Gateway errors become the report's `error`; nothing else is caught. `lanes`: read
    `diagnostics.lanes` too (a second look within one scan does not).
    """
    started = time.perf_counter()
    hello: Hello | None = None
    try:
        async with GatewayClient(spec, identity, clock=clock) as client:
            hello = client.hello
            scopes = await client.verify_scopes((READ_SCOPE,))
            scan = await scan_with(client, lanes=lanes)
    except GatewayError as exc:
        return GatewayReport(
            name=spec.name,
            url=spec.url,
            reachable=hello is not None,
            protocol=hello.protocol if hello else None,
            server_version=hello.server_version if hello else None,
            error=str(exc),
            error_kind=exc.kind,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        ), None
    report = GatewayReport.model_validate(
        {
            "name": spec.name,
            "url": spec.url,
            "reachable": True,
            "protocol": scan.hello.protocol,
            "server_version": scan.hello.server_version,
            "boot_id": scan.hello.boot_marker,
            "scopes": list(scopes),
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "capabilities": scan.capabilities.as_dict(),
            "messages_waiting": scan.messages_waiting,
            "lanes": None if scan.lanes is None else scan.lanes.as_dict(),
            "lanes_error": scan.lanes_error,
            # the rows as plain fields, typed in the report's one validation call: the same
            # SessionReports as `SessionReport.of` makes, at half the cost (a row each scan)
            "sessions": [
                {
                    "key": v.key,
                    "verdict": v.kind.value,
                    "reason": v.reason,
                    "age_s": v.age_s,
                    "quiet_s": v.quiet_s,
                    "session_id": v.session_id,
                    "needs_action": v.needs_action,
                    "waiting": v.waiting,
                }
                for v in scan.verdicts
            ],
        }
    )
    return report, scan


async def check_gateway(
    spec: GatewaySpec,
    identity: DeviceIdentity | None,
    *,
    clock: Callable[[], float] = time.time,
) -> GatewayReport:
    """A read-only report for one gateway; gateway errors become the report's `error`."""
    report, _ = await look(spec, identity, clock=clock)
    return report


async def check_fleet(
    specs: Sequence[GatewaySpec],
    identity: DeviceIdentity | None,
    *,
    concurrency: int = 32,
    on_done: Callable[[GatewayReport], None] | None = None,
) -> list[GatewayReport]:
    """Reports for every gateway, scanned in parallel (bounded), in fleet order.

    `on_done` is called as each gateway finishes (progress bars)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(spec: GatewaySpec) -> GatewayReport:
        async with gate:
            report = await check_gateway(spec, identity)
        if on_done is not None:
            on_done(report)
        return report

    return list(await asyncio.gather(*(one(s) for s in specs)))

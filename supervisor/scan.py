"""One read-only look at one gateway: connect, check scopes, list, classify.

Shared by `check` and the recovery engine's scan task, so both see sessions the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from supervisor.core.detect import (
    GatewayView,
    Verdict,
    VerdictKind,
    classify_rows,
    reports_active_runs,
)
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


def view_of(client: GatewayClient, rows: Sequence[SessionRow | UnreadableRow]) -> GatewayView:
    """The classifier's view of a gateway right after a listing."""
    assert client.hello is not None
    return GatewayView(
        protocol=client.hello.protocol,
        now_ms=client.gateway_now_ms(),
        boot_time_ms=client.hello.boot_time_ms,
        reports_active_runs=reports_active_runs(client.hello.protocol, rows),
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


async def scan_with(client: GatewayClient) -> GatewayScan:
    """List and classify through an open client."""
    assert client.hello is not None
    rows = await client.list_sessions()
    view = view_of(client, rows)
    verdicts = classify_rows(rows, gateway=view, policy=client.spec.policy)
    if not client.hello.clock_known:
        verdicts = without_clock(verdicts)
    return GatewayScan(hello=client.hello, view=view, verdicts=verdicts)


async def look(
    spec: GatewaySpec,
    identity: DeviceIdentity | None,
    *,
    clock: Callable[[], float] = time.time,
) -> tuple[GatewayReport, GatewayScan | None]:
    """A read-only report for one gateway, and the scan behind it (None when it failed).

    Gateway errors become the report's `error`; nothing else is caught.
    """
    started = time.perf_counter()
    hello: Hello | None = None
    try:
        async with GatewayClient(spec, identity, clock=clock) as client:
            hello = client.hello
            scopes = await client.verify_scopes((READ_SCOPE,))
            scan = await scan_with(client)
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

"""Classify session rows into exactly one verdict each, with the reason in words.

The rules, by what the gateway can tell us (see docs in README, "How zombies are detected"):

* not `running`                              -> idle
* gateway reports active runs (protocol >= 4 or any row carries `hasActiveRun`; 2026.9.6):
    running, hasActiveRun false, no run ids   -> zombie once quiet for stale_after, else pending
    running, hasActiveRun true, run ids known, lane started before this boot
                                              -> held (a message waits behind the dead lane)
    running, hasActiveRun true                -> live, or live_overdue past the lane timeout
    running, hasActiveRun missing             -> unknown
* gateway without `hasActiveRun` (2026.3.24): a live hung run and a zombie look the same, so
    running, started before the gateway booted -> zombie / zombie_pending (the run's process died)
    running, started since the boot            -> live / live_overdue
    boot time or startedAt unknown             -> unknown
  `held` cannot be told on these gateways: a message sent to a zombie lane runs at once there.

`status == "running"` alone never makes a zombie. Inconsistent rows are `unknown`, never acted on.
All times are the gateway's clock in ms; the caller translates its own clock (clock skew).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from supervisor.fleet import Policy
from supervisor.gateway.models import SessionRow, UnreadableRow


class VerdictKind(StrEnum):
    IDLE = "idle"
    LIVE = "live"
    LIVE_OVERDUE = "live_overdue"
    ZOMBIE = "zombie"
    ZOMBIE_PENDING = "zombie_pending"
    HELD = "held"
    UNKNOWN = "unknown"


#: verdicts that call for a recovery step
NEEDS_ACTION = frozenset({VerdictKind.ZOMBIE, VerdictKind.LIVE_OVERDUE})


@dataclass(frozen=True)
class GatewayView:
    """What the classifier knows about one gateway at the moment of a listing."""

    protocol: int
    now_ms: float
    boot_time_ms: float | None
    reports_active_runs: bool


@dataclass(frozen=True)
class Verdict:
    """One row's verdict, with the evidence a later action must be bound to."""

    key: str
    kind: VerdictKind
    reason: str
    age_s: float | None = None
    quiet_s: float | None = None
    session_id: str | None = None
    started_at_ms: float | None = None
    run_ids: tuple[str, ...] = ()

    @property
    def needs_action(self) -> bool:
        return self.kind in NEEDS_ACTION


#: builds a verdict for the row being classified
_Make = Callable[[VerdictKind, str], Verdict]


def reports_active_runs(protocol: int, rows: Iterable[SessionRow | UnreadableRow]) -> bool:
    """Whether `hasActiveRun` is to be expected on this gateway's running rows.

    From protocol 4 gateways replay interrupted turns after a restart, so "started before the
    boot" no longer proves a run dead: without `hasActiveRun` such a row must stay unknown.
    """
    return protocol >= 4 or any(
        isinstance(r, SessionRow) and r.has_active_run is not None for r in rows
    )


def _s(ms: float) -> str:
    seconds = ms / 1000
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def classify(row: SessionRow | UnreadableRow, *, gateway: GatewayView, policy: Policy) -> Verdict:
    """The one verdict for one row."""
    if isinstance(row, UnreadableRow):
        return Verdict(row.key or "?", VerdictKind.UNKNOWN, f"unreadable row: {row.problem}")
    now = gateway.now_ms
    started = row.started_at
    age_ms = now - started if started is not None else None
    stamps = [t for t in (row.started_at, row.updated_at) if t is not None]
    quiet_ms = now - max(stamps) if stamps else None

    def verdict(kind: VerdictKind, reason: str) -> Verdict:
        return Verdict(
            key=row.key,
            kind=kind,
            reason=reason,
            age_s=None if age_ms is None else round(age_ms / 1000, 3),
            quiet_s=None if quiet_ms is None else round(quiet_ms / 1000, 3),
            session_id=row.session_id,
            started_at_ms=started,
            run_ids=row.active_run_ids or (),
        )

    future = now + policy.clock_tolerance * 1000
    for name, stamp in (("startedAt", row.started_at), ("updatedAt", row.updated_at)):
        if stamp is not None and stamp > future:
            return verdict(VerdictKind.UNKNOWN, f"{name} lies {_s(stamp - now)} in the future")

    if row.status != "running":
        if row.has_active_run:
            # a new run may start before the row's status catches up: treat as working, and
            # never as overdue, since startedAt may belong to the previous run
            return verdict(
                VerdictKind.LIVE, f"status {row.status!r} but the gateway reports an active run"
            )
        return verdict(VerdictKind.IDLE, f"not running (status {row.status or 'absent'})")

    if gateway.reports_active_runs:
        return _classify_with_active_runs(row, gateway, policy, verdict, age_ms, quiet_ms)
    return _classify_by_boot_time(row, gateway, policy, verdict, age_ms, quiet_ms)


def _zombie(policy: Policy, verdict: _Make, quiet_ms: float | None, why: str) -> Verdict:
    stale_ms = policy.stale_after * 1000
    if quiet_ms is None:
        if stale_ms == 0:
            return verdict(VerdictKind.ZOMBIE, f"{why}; no timestamps, stale_after is 0")
        return verdict(VerdictKind.ZOMBIE_PENDING, f"{why}; no timestamps, so its age is unknown")
    if quiet_ms >= stale_ms:
        return verdict(VerdictKind.ZOMBIE, f"{why}; quiet for {_s(quiet_ms)}")
    return verdict(
        VerdictKind.ZOMBIE_PENDING,
        f"{why}; quiet for {_s(quiet_ms)}, under stale_after {_s(stale_ms)}",
    )


def _live(
    row: SessionRow, policy: Policy, verdict: _Make, age_ms: float | None, why: str
) -> Verdict:
    if age_ms is None:
        return verdict(VerdictKind.LIVE, f"{why}; no startedAt, so never overdue")
    limit_ms = policy.lane_timeout_for(row.key) * 1000
    if age_ms > limit_ms:
        return verdict(
            VerdictKind.LIVE_OVERDUE,
            f"{why}; running for {_s(age_ms)}, past the lane timeout {_s(limit_ms)}",
        )
    return verdict(VerdictKind.LIVE, f"{why}; running for {_s(age_ms)}")


def _classify_with_active_runs(
    row: SessionRow,
    gateway: GatewayView,
    policy: Policy,
    verdict: _Make,
    age_ms: float | None,
    quiet_ms: float | None,
) -> Verdict:
    if row.has_active_run is None:
        return verdict(
            VerdictKind.UNKNOWN, "running, but the row lacks hasActiveRun on a gateway that has it"
        )
    if not row.has_active_run:
        if row.active_run_ids:
            return verdict(
                VerdictKind.UNKNOWN, "inconsistent: hasActiveRun false but activeRunIds listed"
            )
        return _zombie(policy, verdict, quiet_ms, "running with no active run")
    boot = gateway.boot_time_ms
    started = row.started_at
    if (
        row.active_run_ids
        and boot is not None
        and started is not None
        and started < boot - policy.boot_margin * 1000
    ):
        return verdict(
            VerdictKind.HELD,
            f"{len(row.active_run_ids)} message run(s) wait behind a lane running since before "
            "the gateway booted",
        )
    return _live(row, policy, verdict, age_ms, "an active run is reported")


def _classify_by_boot_time(
    row: SessionRow,
    gateway: GatewayView,
    policy: Policy,
    verdict: _Make,
    age_ms: float | None,
    quiet_ms: float | None,
) -> Verdict:
    boot = gateway.boot_time_ms
    started = row.started_at
    if boot is None:
        return verdict(
            VerdictKind.UNKNOWN,
            "running, and the gateway did not report its uptime: a dead run cannot be told "
            "from a live one",
        )
    if started is None:
        return verdict(VerdictKind.UNKNOWN, "running with no startedAt: cannot tell dead from live")
    if started < boot - policy.boot_margin * 1000:
        return _zombie(
            policy,
            verdict,
            quiet_ms,
            f"running since {_s(boot - started)} before the gateway booted",
        )
    return _live(row, policy, verdict, age_ms, "started since the gateway booted")


def classify_rows(
    rows: Sequence[SessionRow | UnreadableRow], *, gateway: GatewayView, policy: Policy
) -> list[Verdict]:
    """Verdicts for a whole listing, in the listing's order."""
    return [classify(row, gateway=gateway, policy=policy) for row in rows]

"""Classify session rows into exactly one verdict each, with the reason in words.

The rules, by what the gateway can tell us (see docs in README, "How zombies are detected");
which of them apply is decided by the gateway's capabilities (`supervisor.core.capabilities`),
not by its version string:

* not `running`                              -> idle, except
    restartRecoveryStatus "tombstoned" (2026.9.6) -> zombie once quiet for stale_after: the
                                                 gateway refuses every turn until a reset
* gateway reports active runs (`has_active_run` yes: protocol >= 4 or any row carries it):
    running, hasActiveRun false, no run ids   -> zombie once quiet for stale_after, else pending
    running, hasActiveRun true, run ids known, lane started before this boot
                                              -> held (a message waits behind the dead lane);
                                                 past held_after it needs action (reset only);
                                                 only where a live run's ids are not listed
                                                 (`active_run_ids_live` no); unknown: unknown
    running, hasActiveRun true                -> live, or live_overdue past the lane timeout
    running, hasActiveRun missing             -> unknown
* gateway without `hasActiveRun` (2026.3.24): a live hung run and a zombie look the same, so
    running, started before the gateway booted -> zombie / zombie_pending (the run's process died)
    running, started since the boot            -> live / live_overdue
    boot time or startedAt unknown             -> unknown
  `held` cannot be told on these gateways: a message sent to a zombie lane runs at once there.
* `has_active_run` unknown                    -> unknown

Held and zombie verdicts carry `waiting`, the messages waiting behind the lane where the rows
say it (held: its listed runs; a zombie's `activeRunIds: []`: none), else None (unknown).

`status == "running"` alone never makes a zombie. Inconsistent rows are `unknown`, never acted on.
All times are the gateway's clock in ms; the caller translates its own clock (clock skew).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from supervisor.core.capabilities import Capabilities, Tri
from supervisor.core.policy import Policy
from supervisor.core.rows import SessionRow, UnreadableRow


class VerdictKind(StrEnum):
    IDLE = "idle"
    LIVE = "live"
    LIVE_OVERDUE = "live_overdue"
    ZOMBIE = "zombie"
    ZOMBIE_PENDING = "zombie_pending"
    HELD = "held"
    UNKNOWN = "unknown"


#: `restartRecoveryStatus` of a row whose restart recovery gave up (2026.9.6, measured)
TOMBSTONED = "tombstoned"

#: verdicts that call for a recovery step
NEEDS_ACTION = frozenset({VerdictKind.ZOMBIE, VerdictKind.LIVE_OVERDUE})


@dataclass(frozen=True)
class GatewayView:
    """What the classifier knows about one gateway at the moment of a listing.

    `capabilities` decide the rules; a view built without them (tests, fuzzers) gets the ones
    `reports_active_runs` stood for before capabilities existed (`Capabilities.assumed`)."""

    protocol: int
    now_ms: float
    boot_time_ms: float | None
    reports_active_runs: bool = False
    capabilities: Capabilities | None = None

    def __post_init__(self) -> None:
        if self.capabilities is None:
            caps = Capabilities.assumed(self.protocol, self.reports_active_runs)
            object.__setattr__(self, "capabilities", caps)
        else:
            object.__setattr__(
                self, "reports_active_runs", self.capabilities.has_active_run is Tri.YES
            )

    @property
    def caps(self) -> Capabilities:
        assert self.capabilities is not None
        return self.capabilities


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
    #: `held` only: the message has waited past `held_after`, so the dead lane is reset
    overdue: bool = False
    #: held and zombie rows: messages waiting behind the lane, None where the rows do not say
    waiting: int | None = None

    @property
    def needs_action(self) -> bool:
        return self.kind in NEEDS_ACTION or (self.kind is VerdictKind.HELD and self.overdue)


#: what the rules decide for one row: its kind and the reason in words
_Decision = tuple[VerdictKind, str]

_new_verdict = object.__new__


def _verdict(
    row: SessionRow, kind: VerdictKind, reason: str, age_ms: float | None, quiet_ms: float | None
) -> Verdict:
    """`Verdict(...)` for a row, built without the frozen dataclass's per-field setattr calls.

    The scan classifies every row of every gateway, so this is the hot path: filling the
    instance's `__dict__` directly gives the very same (frozen, equal, hashable) object at a
    third of the cost of `Verdict.__init__`.
    """
    v = _new_verdict(Verdict)
    d = v.__dict__
    d["key"] = row.key
    d["kind"] = kind
    d["reason"] = reason
    d["age_s"] = None if age_ms is None else round(age_ms / 1000, 3)
    d["quiet_s"] = None if quiet_ms is None else round(quiet_ms / 1000, 3)
    d["session_id"] = row.session_id
    d["started_at_ms"] = row.started_at
    d["run_ids"] = row.active_run_ids or ()
    d["overdue"] = False
    d["waiting"] = None
    return v


def reports_active_runs(protocol: int, rows: Iterable[SessionRow | UnreadableRow]) -> bool:
    """Whether `hasActiveRun` is to be expected on this gateway's running rows.

    From protocol 4 gateways replay interrupted turns after a restart, so "started before the
    boot" no longer proves a run dead: without `hasActiveRun` such a row must stay unknown.
    (The capabilities' `has_active_run`, yes or not; kept for callers that want only this.)
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
    updated = row.updated_at
    age_ms = now - started if started is not None else None
    # now - max(startedAt, updatedAt) over the ones present (the first of equals, as max does)
    if started is None:
        quiet_ms = None if updated is None else now - updated
    else:
        quiet_ms = now - (updated if updated is not None and updated > started else started)

    future = now + policy.clock_tolerance * 1000
    if started is not None and started > future:
        reason = f"startedAt lies {_s(started - now)} in the future"
        return _verdict(row, VerdictKind.UNKNOWN, reason, age_ms, quiet_ms)
    if updated is not None and updated > future:
        reason = f"updatedAt lies {_s(updated - now)} in the future"
        return _verdict(row, VerdictKind.UNKNOWN, reason, age_ms, quiet_ms)

    status = row.status
    if status != "running":
        if row.has_active_run:
            # a new run may start before the row's status catches up: treat as working, and
            # never as overdue, since startedAt may belong to the previous run
            return _verdict(
                row,
                VerdictKind.LIVE,
                f"status {status!r} but the gateway reports an active run",
                age_ms,
                quiet_ms,
            )
        if row.restart_recovery_status == TOMBSTONED:
            # measured on 2026.9.6: its restart recovery gave up on the interrupted turn, and
            # every sessions.send/chat.send/agent is refused ("ended during restart recovery.
            # Use /new or /reset") until a reset: as silent for the user as a zombie
            kind, reason = _zombie(
                policy,
                quiet_ms,
                f"status {status or 'absent'}, but the gateway's restart recovery gave up on it "
                "(restartRecoveryStatus tombstoned): every turn is refused until a reset",
            )
            return _verdict(row, kind, reason, age_ms, quiet_ms)
        return _verdict(
            row, VerdictKind.IDLE, f"not running (status {status or 'absent'})", age_ms, quiet_ms
        )

    has_active_run = gateway.caps.has_active_run
    if has_active_run is Tri.YES:
        kind, reason = _classify_with_active_runs(row, gateway, policy, age_ms, quiet_ms)
    elif has_active_run is Tri.NO:
        kind, reason = _classify_by_boot_time(row, gateway, policy, age_ms, quiet_ms)
    else:
        kind, reason = (
            VerdictKind.UNKNOWN,
            "running, and it is unknown whether this gateway reports hasActiveRun",
        )
    verdict = _verdict(row, kind, reason, age_ms, quiet_ms)
    if kind in _WAITING_KNOWN:
        verdict.__dict__["waiting"] = _waiting(row, kind, gateway.caps)
    if kind is VerdictKind.HELD and quiet_ms is not None and quiet_ms >= policy.held_after * 1000:
        # a replay shows this shape for seconds after a boot; a message stuck this long is not
        # waiting for one: the lane is dead and the message never runs (openclaw #59878)
        verdict.__dict__["overdue"] = True
        verdict.__dict__["reason"] = f"{reason}; quiet for {_s(quiet_ms)}, past held_after"
    return verdict


_WAITING_KNOWN = frozenset({VerdictKind.HELD, VerdictKind.ZOMBIE, VerdictKind.ZOMBIE_PENDING})


def _waiting(row: SessionRow, kind: VerdictKind, caps: Capabilities) -> int | None:
    """Messages waiting behind a held or zombie lane, where the row says it (else None)."""
    if kind is VerdictKind.HELD:
        return len(row.active_run_ids or ())
    if caps.counts_waiting is Tri.YES and row.has_active_run is False and row.active_run_ids == ():
        return 0
    return None


def _zombie(policy: Policy, quiet_ms: float | None, why: str) -> _Decision:
    stale_ms = policy.stale_after * 1000
    if quiet_ms is None:
        if stale_ms == 0:
            return VerdictKind.ZOMBIE, f"{why}; no timestamps, stale_after is 0"
        return VerdictKind.ZOMBIE_PENDING, f"{why}; no timestamps, so its age is unknown"
    if quiet_ms >= stale_ms:
        return VerdictKind.ZOMBIE, f"{why}; quiet for {_s(quiet_ms)}"
    return (
        VerdictKind.ZOMBIE_PENDING,
        f"{why}; quiet for {_s(quiet_ms)}, under stale_after {_s(stale_ms)}",
    )


def _live(row: SessionRow, policy: Policy, age_ms: float | None, why: str) -> _Decision:
    if age_ms is None:
        return VerdictKind.LIVE, f"{why}; no startedAt, so never overdue"
    limit_ms = policy.lane_timeout_for(row.key) * 1000
    if age_ms > limit_ms:
        return (
            VerdictKind.LIVE_OVERDUE,
            f"{why}; running for {_s(age_ms)}, past the lane timeout {_s(limit_ms)}",
        )
    return VerdictKind.LIVE, f"{why}; running for {_s(age_ms)}"


def _classify_with_active_runs(
    row: SessionRow,
    gateway: GatewayView,
    policy: Policy,
    age_ms: float | None,
    quiet_ms: float | None,
) -> _Decision:
    if row.has_active_run is None:
        return (
            VerdictKind.UNKNOWN,
            "running, but the row lacks hasActiveRun on a gateway that has it",
        )
    if not row.has_active_run:
        if row.active_run_ids:
            return (
                VerdictKind.UNKNOWN,
                "inconsistent: hasActiveRun false but activeRunIds listed",
            )
        return _zombie(policy, quiet_ms, "running with no active run")
    boot = gateway.boot_time_ms
    started = row.started_at
    if (
        row.active_run_ids
        and boot is not None
        and started is not None
        and started < boot - policy.boot_margin * 1000
    ):
        live_ids = gateway.caps.active_run_ids_live
        if live_ids is Tri.YES:
            # this line lists a live run's own id: the listed run is the live one, nothing waits
            return _live(row, policy, age_ms, "an active run is reported (its id listed)")
        if live_ids is Tri.UNKNOWN:
            return (
                VerdictKind.UNKNOWN,
                "run ids listed on a lane running since before the boot, and it is unknown "
                "whether this gateway lists a live run's ids: held or live cannot be told",
            )
        return (
            VerdictKind.HELD,
            f"{len(row.active_run_ids)} message run(s) wait behind a lane running since before "
            "the gateway booted",
        )
    return _live(row, policy, age_ms, "an active run is reported")


def _classify_by_boot_time(
    row: SessionRow,
    gateway: GatewayView,
    policy: Policy,
    age_ms: float | None,
    quiet_ms: float | None,
) -> _Decision:
    boot = gateway.boot_time_ms
    started = row.started_at
    if boot is None:
        return (
            VerdictKind.UNKNOWN,
            "running, and the gateway did not report its uptime: a dead run cannot be told "
            "from a live one",
        )
    if started is None:
        return VerdictKind.UNKNOWN, "running with no startedAt: cannot tell dead from live"
    if started < boot - policy.boot_margin * 1000:
        return _zombie(
            policy,
            quiet_ms,
            f"running since {_s(boot - started)} before the gateway booted",
        )
    return _live(row, policy, age_ms, "started since the gateway booted")


def classify_rows(
    rows: Sequence[SessionRow | UnreadableRow], *, gateway: GatewayView, policy: Policy
) -> list[Verdict]:
    """Verdicts for a whole listing, in the listing's order."""
    return [classify(row, gateway=gateway, policy=policy) for row in rows]

"""Prometheus series, all under `lane_supervisor_`, recorded by scans and steps, never raising.

Label policy as openclaw's own exporter: gateway names, verdicts, steps, outcomes and kinds,
never session keys, session ids or run ids (unbounded cardinality).

Prefork workers: with `PROMETHEUS_MULTIPROC_DIR` set (`up` and compose set it) every process
writes its samples to files there, and `lane-supervisor metrics` serves them all through
prometheus-client's `MultiProcessCollector`. Without it, the series live in this process only
(the `heal` command, tests).

| series | type | labels |
|---|---|---|
| lane_supervisor_scans_total | counter | gateway, outcome (ok, error) |
| lane_supervisor_scan_duration_seconds | histogram | gateway |
| lane_supervisor_sessions | gauge | gateway, verdict |
| lane_supervisor_actions_total | counter | step, outcome |
| lane_supervisor_time_to_heal_seconds | histogram | |
| lane_supervisor_escalations_total | counter | kind |
| lane_supervisor_resolves_total | counter | kind |
| lane_supervisor_breaker_open | gauge | gateway, breaker (unreachable, zombies) |
| lane_supervisor_lease_conflicts_total | counter | |
| lane_supervisor_gateway_errors_total | counter | gateway, kind |
| lane_supervisor_gateway_approval_pending | gauge | gateway (1: device awaits approval) |
| lane_supervisor_messages_waiting | gauge | gateway (behind held/zombie lanes; NaN: unknown) |
| lane_supervisor_lane_queued_messages | gauge | gateway (`diagnostics.lanes`; NaN: unknown) |
| lane_supervisor_last_scan_timestamp_seconds | gauge | gateway |
| lane_supervisor_scan_interval_seconds | gauge | gateway |
| lane_supervisor_worker_heartbeat_timestamp_seconds | gauge | host |

The alert rules and the dashboard built on these are in deploy/ (README: "Alerts and dashboard").
Counters whose first increment must be seen by `increase()` (escalations, resolves) are created
at 0 for every known kind at import: Prometheus sees no increase on a series born at 1.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter as Tally
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from supervisor.scan import GatewayReport

log = logging.getLogger(__name__)
P = ParamSpec("P")
PREFIX = "lane_supervisor"
VERDICTS = ("idle", "live", "live_overdue", "zombie", "zombie_pending", "held", "unknown")

SCANS = Counter(f"{PREFIX}_scans", "Gateway scans", ["gateway", "outcome"])
SCAN_SECONDS = Histogram(
    f"{PREFIX}_scan_duration_seconds", "Time to connect, list and classify", ["gateway"]
)
SESSIONS = Gauge(
    f"{PREFIX}_sessions",
    "Sessions by verdict at the last scan",
    ["gateway", "verdict"],
    multiprocess_mode="mostrecent",
)
ACTIONS = Counter(f"{PREFIX}_actions", "Recovery steps by outcome", ["step", "outcome"])
TIME_TO_HEAL = Histogram(
    f"{PREFIX}_time_to_heal_seconds",
    "From the first attempt on a session to its verified heal",
    buckets=(1, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 7200, 21600, 86400),
)
ESCALATIONS = Counter(f"{PREFIX}_escalations", "Escalations opened", ["kind"])
RESOLVES = Counter(f"{PREFIX}_resolves", "Escalations resolved", ["kind"])
BREAKER = Gauge(
    f"{PREFIX}_breaker_open",
    "1 while a breaker is open",
    ["gateway", "breaker"],
    multiprocess_mode="mostrecent",
)
READ_TO_SEND = Histogram(
    f"{PREFIX}_read_to_send_seconds",
    "Time from a mutating step's final read to its request (bounded by act_window)",
    ["step"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
LEASE_CONFLICTS = Counter(f"{PREFIX}_lease_conflicts", "Attempts not started: lease held")
GATEWAY_ERRORS = Counter(f"{PREFIX}_gateway_errors", "Failed scans by kind", ["gateway", "kind"])
APPROVAL_PENDING = Gauge(
    f"{PREFIX}_gateway_approval_pending",
    "1 while the gateway refuses this device until `openclaw devices approve` (not_paired)",
    ["gateway"],
    multiprocess_mode="mostrecent",
)
MESSAGES_WAITING = Gauge(
    f"{PREFIX}_messages_waiting",
    "Messages waiting behind held and zombie lanes at the last scan, as the rows say "
    "(NaN: the gateway's rows do not say; never a guessed 0)",
    ["gateway"],
    multiprocess_mode="mostrecent",
)
LANE_QUEUED = Gauge(
    f"{PREFIX}_lane_queued_messages",
    "Messages queued on the gateway's session lanes (diagnostics.lanes) at the last scan "
    "(NaN: not read; absent: the gateway has no diagnostics.lanes)",
    ["gateway"],
    multiprocess_mode="mostrecent",
)
LAST_SCAN = Gauge(
    f"{PREFIX}_last_scan_timestamp_seconds",
    "Unix time the last scan of the gateway finished (ok or not)",
    ["gateway"],
    multiprocess_mode="max",
)
SCAN_INTERVAL = Gauge(
    f"{PREFIX}_scan_interval_seconds",
    "The gateway's configured scan_interval",
    ["gateway"],
    multiprocess_mode="mostrecent",
)
WORKER_HEARTBEAT = Gauge(
    f"{PREFIX}_worker_heartbeat_timestamp_seconds",
    "Unix time a worker process on this host last said it is alive",
    ["host"],
    multiprocess_mode="max",
)
#: every kind `escalated()`/`resolved()` is called with, created at 0 (see the module doc)
ESCALATION_KINDS = (
    "session",
    "flapping",
    "collided",
    "messages_dropped",
    "gateway_unreachable",
    "gateway_flapping",
    "breaker_open",
    "redis_not_durable",
)
for _kind in ESCALATION_KINDS:
    ESCALATIONS.labels(_kind)
    RESOLVES.labels(_kind)
#: the error kind that means "approve this device on the gateway host"
NOT_PAIRED = "not_paired"
APPROVAL = "approval_pending"


#: gateways whose lane counts this process has exported (a failed scan makes theirs NaN)
_LANES_SEEN: set[str] = set()


def _safe(fn: Callable[P, None]) -> Callable[P, None]:
    """Metrics never raise into a scan or a step."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:  # pragma: no cover - defensive
            log.exception("metric not recorded")

    wrapper.__doc__ = fn.__doc__
    return wrapper


@_safe
def scanned(report: GatewayReport, *, interval_s: float | None = None) -> None:
    SCANS.labels(report.name, "error" if report.error else "ok").inc()
    SCAN_SECONDS.labels(report.name).observe(report.duration_ms / 1000)
    LAST_SCAN.labels(report.name).set(time.time())
    if interval_s is not None:
        SCAN_INTERVAL.labels(report.name).set(interval_s)
    if report.error:
        GATEWAY_ERRORS.labels(report.name, report.error_kind or "error").inc()
        if report.error_kind in (NOT_PAIRED, APPROVAL):
            APPROVAL_PENDING.labels(report.name).set(1)
        # another error (unreachable...) says nothing about pairing: the gauge keeps its value
        # while a gateway cannot be read, what waits on it is unknown, not what it was
        MESSAGES_WAITING.labels(report.name).set(math.nan)
        if report.name in _LANES_SEEN:
            LANE_QUEUED.labels(report.name).set(math.nan)
        return
    APPROVAL_PENDING.labels(report.name).set(0)
    waiting = report.messages_waiting
    MESSAGES_WAITING.labels(report.name).set(math.nan if waiting is None else waiting)
    if report.lanes is not None:
        _LANES_SEEN.add(report.name)
        LANE_QUEUED.labels(report.name).set(report.lanes["session_queued"])
    elif report.lanes_error is not None:
        _LANES_SEEN.add(report.name)
        LANE_QUEUED.labels(report.name).set(math.nan)
    counts = Tally(s.verdict for s in report.sessions)
    for verdict in VERDICTS:
        SESSIONS.labels(report.name, verdict).set(counts.get(verdict, 0))


@_safe
def action(step: str, outcome: str) -> None:
    ACTIONS.labels(step, outcome).inc()


@_safe
def healed(seconds: float) -> None:
    TIME_TO_HEAL.observe(max(0.0, seconds))


@_safe
def escalated(kind: str) -> None:
    ESCALATIONS.labels(kind).inc()


@_safe
def resolved(kind: str) -> None:
    RESOLVES.labels(kind).inc()


@_safe
def breaker(gateway: str, name: str, *, is_open: bool) -> None:
    BREAKER.labels(gateway, name).set(1 if is_open else 0)


@_safe
def lease_conflict() -> None:
    LEASE_CONFLICTS.inc()


@_safe
def read_to_send(step: str, seconds: float) -> None:
    READ_TO_SEND.labels(step).observe(seconds)


@_safe
def heartbeat(host: str) -> None:
    WORKER_HEARTBEAT.labels(host).set(time.time())

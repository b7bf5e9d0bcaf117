"""Detection matrix and properties. Pure: no sockets, a fixed clock (ms)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.core.detect import GatewayView, VerdictKind, classify, reports_active_runs
from supervisor.core.policy import Policy
from supervisor.core.rows import SessionRow, UnreadableRow
from supervisor.gateway.models import parse_row

NOW = 1_795_600_000_000.0
MIN = 60_000.0
BOOT = NOW - 30 * MIN  # the gateway booted 30 minutes ago
POLICY = Policy(stale_after=20 * 60, lane_timeout=2 * 3600)
NEW = GatewayView(protocol=4, now_ms=NOW, boot_time_ms=BOOT, reports_active_runs=True)
OLD = GatewayView(protocol=3, now_ms=NOW, boot_time_ms=BOOT, reports_active_runs=False)
Z = VerdictKind


def row(**fields: Any) -> SessionRow | UnreadableRow:
    return parse_row({"key": "agent:dev:s1", "sessionId": "sid-1", **fields})


CASES = [
    # 2026.9.6 shapes (measured; shared doc "What a zombie looks like")
    (
        "9.6 zombie quiet 25m",
        NEW,
        dict(
            status="running",
            hasActiveRun=False,
            activeRunIds=[],
            abortedLastRun=True,
            startedAt=NOW - 26 * MIN,
            updatedAt=NOW - 25 * MIN,
        ),
        Z.ZOMBIE,
    ),
    (
        "9.6 zombie quiet 5m",
        NEW,
        dict(
            status="running",
            hasActiveRun=False,
            activeRunIds=[],
            startedAt=NOW - 6 * MIN,
            updatedAt=NOW - 5 * MIN,
        ),
        Z.ZOMBIE_PENDING,
    ),
    (
        "9.6 zombie since before boot",
        NEW,
        dict(status="running", hasActiveRun=False, activeRunIds=[], startedAt=BOOT - 3 * 86400e3),
        Z.ZOMBIE,
    ),
    (
        "9.6 live hung run",
        NEW,
        dict(status="running", hasActiveRun=True, startedAt=NOW - 5 * MIN),
        Z.LIVE,
    ),
    (
        "9.6 live run started before boot (replay)",
        NEW,
        dict(status="running", hasActiveRun=True, startedAt=BOOT - 60 * MIN),
        Z.LIVE,
    ),
    (
        "9.6 live overdue",
        NEW,
        dict(status="running", hasActiveRun=True, startedAt=NOW - 3 * 60 * MIN),
        Z.LIVE_OVERDUE,
    ),
    (
        "9.6 held behind a dead lane",
        NEW,
        dict(
            status="running", hasActiveRun=True, activeRunIds=["run-x"], startedAt=BOOT - 60 * MIN
        ),
        Z.HELD,
    ),
    (
        "9.6 live with run ids",
        NEW,
        dict(status="running", hasActiveRun=True, activeRunIds=["run-x"], startedAt=NOW - MIN),
        Z.LIVE,
    ),
    (
        "9.6 running, hasActiveRun missing",
        NEW,
        dict(status="running", startedAt=BOOT - 9 * MIN),
        Z.UNKNOWN,
    ),
    (
        "9.6 inconsistent run ids",
        NEW,
        dict(status="running", hasActiveRun=False, activeRunIds=["r"], startedAt=NOW - 60 * MIN),
        Z.UNKNOWN,
    ),
    ("9.6 reset row", NEW, dict(hasActiveRun=False, activeRunIds=[]), Z.IDLE),
    ("9.6 killed", NEW, dict(status="killed", hasActiveRun=False, startedAt=NOW - MIN), Z.IDLE),
    (
        "9.6 done but a new run active",
        NEW,
        dict(status="done", hasActiveRun=True, startedAt=NOW - 9 * 60 * MIN),
        Z.LIVE,
    ),
    # 2026.3.24 shapes: zombie and live hung run look identical but for startedAt vs boot
    (
        "3.24 zombie",
        OLD,
        dict(status="running", abortedLastRun=False, startedAt=BOOT - 60 * MIN),
        Z.ZOMBIE,
    ),
    (
        "3.24 zombie just before boot, quiet 25m",
        OLD,
        dict(status="running", startedAt=NOW - 35 * MIN, updatedAt=NOW - 25 * MIN),
        Z.ZOMBIE,
    ),
    (
        "3.24 zombie within boot margin is live",
        OLD,
        dict(status="running", startedAt=BOOT - 50),
        Z.LIVE,
    ),
    (
        # measured: a run killed as it started lies 0.24-0.84 s before the derived boot
        "3.24 run killed as it started, 0.24 s before the boot, is a zombie",
        OLD,
        dict(status="running", startedAt=BOOT - 240),
        Z.ZOMBIE,
    ),
    (
        "3.24 live hung run",
        OLD,
        dict(status="running", abortedLastRun=False, startedAt=NOW - 10 * MIN),
        Z.LIVE,
    ),
    (
        "3.24 five-hour run from before boot",
        OLD,
        dict(status="running", startedAt=NOW - 5 * 60 * MIN),
        Z.ZOMBIE,
    ),
    ("3.24 no startedAt", OLD, dict(status="running"), Z.UNKNOWN),
    ("3.24 done", OLD, dict(status="done", startedAt=BOOT - 60 * MIN), Z.IDLE),
    (
        "future startedAt",
        NEW,
        dict(status="running", hasActiveRun=False, activeRunIds=[], startedAt=NOW + 60 * MIN),
        Z.UNKNOWN,
    ),
]


@pytest.mark.parametrize(("name", "view", "fields", "expected"), CASES, ids=[c[0] for c in CASES])
def test_verdict_matrix(
    name: str, view: GatewayView, fields: dict[str, Any], expected: VerdictKind
) -> None:
    verdict = classify(row(**fields), gateway=view, policy=POLICY)
    assert verdict.kind is expected, verdict.reason
    assert verdict.reason


def test_a_3_24_live_run_past_the_lane_timeout_is_overdue() -> None:
    # a run started since the boot that has run longer than lane_timeout
    view = GatewayView(
        protocol=3, now_ms=NOW, boot_time_ms=NOW - 10 * 60 * MIN, reports_active_runs=False
    )
    v = classify(row(status="running", startedAt=NOW - 3 * 60 * MIN), gateway=view, policy=POLICY)
    assert v.kind is Z.LIVE_OVERDUE


def test_lane_timeout_per_key_pattern() -> None:
    policy = Policy(lane_timeout=3600, lane_timeouts={"agent:dev:*": "6h"})
    fields = dict(status="running", hasActiveRun=True, startedAt=NOW - 3 * 60 * MIN)
    assert classify(row(**fields), gateway=NEW, policy=policy).kind is Z.LIVE
    other = parse_row({"key": "agent:main:x", **fields})
    assert classify(other, gateway=NEW, policy=policy).kind is Z.LIVE_OVERDUE


def test_boot_time_unknown_on_an_old_gateway_is_unknown() -> None:
    view = GatewayView(protocol=3, now_ms=NOW, boot_time_ms=None, reports_active_runs=False)
    v = classify(row(status="running", startedAt=NOW - 900 * MIN), gateway=view, policy=POLICY)
    assert v.kind is Z.UNKNOWN


def test_unreadable_rows_are_unknown() -> None:
    bad = parse_row({"key": "agent:dev:x", "status": "running", "startedAt": "yesterday"})
    assert isinstance(bad, UnreadableRow)
    v = classify(bad, gateway=NEW, policy=POLICY)
    assert v.kind is Z.UNKNOWN and v.key == "agent:dev:x"
    assert classify(parse_row(["not", "a", "row"]), gateway=NEW, policy=POLICY).kind is Z.UNKNOWN


def test_unknown_fields_are_ignored() -> None:
    r = row(
        status="running",
        hasActiveRun=False,
        activeRunIds=[],
        startedAt=NOW - 60 * MIN,
        placement={"x": 1},
        owner="someone",
        participants=[1, 2],
    )
    assert classify(r, gateway=NEW, policy=POLICY).kind is Z.ZOMBIE


def test_stale_after_zero_makes_a_fresh_zombie_definitive() -> None:
    v = classify(
        row(status="running", hasActiveRun=False, activeRunIds=[], startedAt=NOW - 1000),
        gateway=NEW,
        policy=Policy(stale_after=0),
    )
    assert v.kind is Z.ZOMBIE


def test_capability_comes_from_protocol_or_rows() -> None:
    assert reports_active_runs(4, [])
    assert not reports_active_runs(3, [row(status="running")])
    assert reports_active_runs(3, [row(hasActiveRun=False)])


# -- properties ------------------------------------------------------------------------------

times = st.floats(min_value=NOW - 30 * 86400e3, max_value=NOW, allow_nan=False)
durations = st.floats(min_value=0, max_value=30 * 86400)
extra_fields = st.dictionaries(
    st.sampled_from(["abortedLastRun", "endedAt", "lastRunId"]),
    st.one_of(st.booleans(), st.integers(), st.text(max_size=5)),
)


@settings(max_examples=400, deadline=None)
@given(
    started=times,
    updated=st.one_of(st.none(), times),
    run_ids=st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=8), max_size=3)),
    boot=times,
    stale=durations,
    lane=durations,
    extra=extra_fields,
)
def test_no_live_run_is_ever_a_zombie_on_9_6(
    started: float,
    updated: float | None,
    run_ids: list[str] | None,
    boot: float,
    stale: float,
    lane: float,
    extra: dict[str, Any],
) -> None:
    fields: dict[str, Any] = {
        **extra,
        "status": "running",
        "hasActiveRun": True,
        "startedAt": started,
    }
    if updated is not None:
        fields["updatedAt"] = updated
    if run_ids is not None:
        fields["activeRunIds"] = run_ids
    view = GatewayView(protocol=4, now_ms=NOW, boot_time_ms=boot, reports_active_runs=True)
    v = classify(row(**fields), gateway=view, policy=Policy(stale_after=stale, lane_timeout=lane))
    assert v.kind not in {Z.ZOMBIE, Z.ZOMBIE_PENDING}


@settings(max_examples=400, deadline=None)
@given(
    uptime=st.floats(min_value=0, max_value=30 * 86400e3),
    since_boot=st.floats(min_value=0, max_value=30 * 86400e3),
    stale=durations,
    lane=durations,
    protocol=st.sampled_from([3, 4]),
)
def test_no_run_started_since_boot_is_a_zombie_on_3_24(
    uptime: float, since_boot: float, stale: float, lane: float, protocol: int
) -> None:
    boot = NOW - uptime
    started = min(boot + since_boot, NOW)
    view = GatewayView(protocol=3, now_ms=NOW, boot_time_ms=boot, reports_active_runs=False)
    v = classify(
        row(status="running", startedAt=started, abortedLastRun=False),
        gateway=view,
        policy=Policy(stale_after=stale, lane_timeout=lane),
    )
    assert v.kind not in {Z.ZOMBIE, Z.ZOMBIE_PENDING}


@settings(max_examples=300, deadline=None)
@given(
    raw=st.dictionaries(
        st.sampled_from(
            ["key", "status", "startedAt", "updatedAt", "hasActiveRun", "activeRunIds", "sessionId"]
        ),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.text(max_size=10),
            st.lists(st.integers(), max_size=2),
        ),
    ),
    view=st.sampled_from([NEW, OLD]),
)
def test_any_row_gets_exactly_one_verdict_and_never_crashes(
    raw: dict[str, Any], view: GatewayView
) -> None:
    v = classify(parse_row(raw), gateway=view, policy=POLICY)
    assert isinstance(v.kind, VerdictKind) and v.reason
    if raw.get("status") != "running":
        assert v.kind not in {Z.ZOMBIE, Z.ZOMBIE_PENDING, Z.LIVE_OVERDUE, Z.HELD}


def test_held_needs_action_only_past_held_after() -> None:
    fields = dict(
        status="running",
        hasActiveRun=True,
        activeRunIds=["run-x"],
        startedAt=BOOT - 60 * MIN,
        updatedAt=NOW - 11 * MIN,
    )
    fresh = classify(row(**fields), gateway=NEW, policy=Policy(held_after=20 * 60))
    stuck = classify(row(**fields), gateway=NEW, policy=Policy(held_after=10 * 60))
    assert (fresh.kind, fresh.needs_action) == (Z.HELD, False)
    assert (stuck.kind, stuck.needs_action) == (Z.HELD, True)
    assert "past held_after" in stuck.reason and stuck.run_ids == ("run-x",)

"""A row 2026.9.6's restart recovery gave up on: finished-looking, but every turn is refused.

Measured on the real 2026.9.6 (tests/e2e/test_tombstone_real.py): after three replays of an
interrupted turn died before their turn started, the next boot left the row `failed`, nothing
active, `restartRecoveryStatus: "tombstoned"`, and refused every sessions.send, chat.send and
agent until a reset. Such a row needs a reset as much as a zombie does.
"""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.core.detect import GatewayView, VerdictKind, classify
from supervisor.core.policy import Policy
from supervisor.gateway.models import parse_row

NOW = 1_796_174_200_000.0
MIN = 60_000.0
BOOT = NOW - 30 * MIN
POLICY = Policy(stale_after=20 * 60, lane_timeout=2 * 3600)
NEW = GatewayView(protocol=4, now_ms=NOW, boot_time_ms=BOOT, reports_active_runs=True)

#: the measured row (fields the supervisor reads; the real one has ~40 more)
TOMBSTONED: dict[str, Any] = {
    "key": "agent:main:a-victim",
    "sessionId": "9c50a51e-73b1-48b1-8e18-2fae7ed87496",
    "status": "failed",
    "abortedLastRun": False,
    "hasActiveRun": False,
    "activeRunIds": [],
    "startedAt": BOOT - 3 * MIN,
    "endedAt": BOOT + 1000,
    "updatedAt": BOOT + 1300,
    "restartRecoveryStatus": "tombstoned",
}


def verdict(**changes: Any) -> tuple[VerdictKind, str]:
    row = parse_row({**TOMBSTONED, **changes})
    v = classify(row, gateway=NEW, policy=POLICY)
    return v.kind, v.reason


def test_a_tombstoned_row_is_a_zombie_with_the_reason_in_words() -> None:
    kind, reason = verdict()
    assert kind is VerdictKind.ZOMBIE
    assert "tombstoned" in reason and "refused" in reason and "status failed" in reason


def test_a_tombstone_waits_for_stale_after_like_any_zombie() -> None:
    kind, _ = verdict(updatedAt=NOW - 5 * MIN, endedAt=NOW - 5 * MIN)
    assert kind is VerdictKind.ZOMBIE_PENDING


@pytest.mark.parametrize("status", [None, "done", "killed", "timeout"])
def test_any_finished_status_with_the_tombstone_is_a_zombie(status: str | None) -> None:
    changes: dict[str, Any] = {"status": status} if status else {"status": None}
    kind, _ = verdict(**changes)
    assert kind is VerdictKind.ZOMBIE


def test_an_active_run_wins_over_the_tombstone() -> None:
    # a replacement run (the gateway's own `/new`) is work in progress: never touched
    kind, _ = verdict(hasActiveRun=True, activeRunIds=None)
    assert kind is VerdictKind.LIVE


@pytest.mark.parametrize("value", [None, "", "recovering", "TOMBSTONED"])
def test_without_the_tombstone_a_failed_row_is_idle(value: str | None) -> None:
    kind, _ = verdict(restartRecoveryStatus=value)
    assert kind is VerdictKind.IDLE


def test_an_unreadable_tombstone_field_makes_the_row_unknown_not_idle() -> None:
    kind, _ = verdict(restartRecoveryStatus={"tombstone": True})
    assert kind is VerdictKind.UNKNOWN

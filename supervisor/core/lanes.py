"""The counts of `diagnostics.lanes` (2026.9.x), read once per scan: per gateway, not per session.

Measured on 2026.9.6: `lanes` lists the named global lanes (`main`, `cron`, `background`, ...,
each with `activeCount` and `queuedCount`), and `dynamic` aggregates the session lanes
(`laneCount`, `activeCount`, `queuedCount`, `queuedLaneCount`), `null` when there is none.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LaneCounts:
    """Active and queued work on one gateway, as its `diagnostics.lanes` said."""

    #: session lanes in use, and runs active / messages queued on them (`dynamic`)
    session_lanes: int
    session_active: int
    session_queued: int
    #: session lanes with at least one message queued
    queued_session_lanes: int
    #: sums over the named global lanes; agent runs count in `main` as well as in `dynamic`,
    #: so the two are never added up
    named_active: int
    named_queued: int
    #: named lanes that say what blocks them
    blocked_lanes: int

    def as_dict(self) -> dict[str, int]:
        return {
            "session_lanes": self.session_lanes,
            "session_active": self.session_active,
            "session_queued": self.session_queued,
            "queued_session_lanes": self.queued_session_lanes,
            "named_active": self.named_active,
            "named_queued": self.named_queued,
            "blocked_lanes": self.blocked_lanes,
        }


def _count(obj: dict[str, Any], name: str, where: str) -> int:
    value = obj.get(name, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}.{name} is not a count: {str(value)[:40]!r}")
    return value


def parse_lanes(payload: object) -> LaneCounts:
    """The counts of a `diagnostics.lanes` answer; ValueError (in words) for any other shape:
    a count read from a malformed answer would be a guess, so it stays unknown."""
    if not isinstance(payload, dict):
        raise ValueError("diagnostics.lanes answer is not an object")
    lanes = payload.get("lanes")
    if not isinstance(lanes, list):
        raise ValueError("diagnostics.lanes answer holds no list of lanes")
    named_active = named_queued = blocked = 0
    for i, lane in enumerate(lanes):
        if not isinstance(lane, dict):
            raise ValueError(f"lanes[{i}] is not an object")
        named_active += _count(lane, "activeCount", f"lanes[{i}]")
        named_queued += _count(lane, "queuedCount", f"lanes[{i}]")
        if lane.get("blockedBy") not in (None, "", []):
            blocked += 1
    dynamic = payload.get("dynamic")
    if dynamic is None:
        dynamic = {}
    if not isinstance(dynamic, dict):
        raise ValueError("diagnostics.lanes `dynamic` is not an object")
    return LaneCounts(
        session_lanes=_count(dynamic, "laneCount", "dynamic"),
        session_active=_count(dynamic, "activeCount", "dynamic"),
        session_queued=_count(dynamic, "queuedCount", "dynamic"),
        queued_session_lanes=_count(dynamic, "queuedLaneCount", "dynamic"),
        named_active=named_active,
        named_queued=named_queued,
        blocked_lanes=blocked,
    )


def waiting_text(waiting: int | None) -> str:
    """`N messages waiting` behind a held or zombie lane, or `unknown` (never a guessed 0)."""
    if waiting is None:
        return "messages waiting: unknown"
    return f"{waiting} message{'' if waiting == 1 else 's'} waiting"

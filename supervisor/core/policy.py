"""The thresholds and switches the decision core reads: one `Policy` per gateway.

Set in a fleet file's `[defaults]` and overridable per gateway; `supervisor.fleet` builds it.
A value type only: no files, no environment, no paging.
"""

from __future__ import annotations

import fnmatch
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from supervisor.core.durations import Duration


class Policy(BaseModel):
    """Thresholds and behaviour, set in `[defaults]` and overridable per gateway."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scan_interval: Duration = Field(60.0, description="How often each gateway is scanned.")
    stale_after: Duration = Field(
        1200.0,
        description="A zombie (running, no active run) quiet for longer than this gets recovered.",
    )
    held_after: Duration = Field(
        600.0,
        description="A message held behind a lane running since before the boot (verdict "
        "held) this long means the lane is dead: it is reset (never aborted, which would drop "
        "the message's run). A restart replay shows that shape for seconds only.",
    )
    held_messages: Literal["report", "redeliver"] = Field(
        "report",
        description="What happens to the messages a reset drops from behind a dead lane "
        "(2026.9.6 throws them away unanswered, measured): `report` records each (run id, "
        "waiting since) in the audit, `heal --json`, status and one page; `redeliver` also "
        "keeps its text (read with chat.history) and sends it again, once, after verify says "
        "healed.",
    )
    redeliver_max_age: Duration = Field(
        3600.0,
        description="`redeliver` never sends a held message again that has waited longer "
        "than this: it is reported instead (an answer hours late may do more harm than good).",
    )
    lane_timeout: Duration = Field(
        7200.0,
        description="A live run older than this is `live_overdue` and may be aborted. "
        "Generous on purpose: long tool calls are legitimate (openclaw #140671).",
    )
    lane_timeouts: dict[str, Duration] = Field(
        default_factory=dict,
        description='Per session-key glob lane timeouts, e.g. {"agent:research:*" = "6h"}; '
        "the first matching pattern wins over lane_timeout.",
    )
    boot_margin: Duration = Field(
        0.1,
        description="On gateways without hasActiveRun, a run counts as started before the boot "
        "only if it started at least this long before it. Measured on 2026.3.24: a run killed "
        "as it started lies 0.24-0.84 s before the boot derived from uptime, and a live run "
        "starts seconds after it.",
    )
    clock_tolerance: Duration = Field(
        300.0,
        description="A row timestamp further than this in the gateway's future is inconsistent "
        "(verdict unknown).",
    )
    connect_timeout: Duration = Field(10.0, description="Time allowed for the WebSocket handshake.")
    call_timeout: Duration = Field(15.0, description="Time allowed for one request's answer.")
    max_frame_bytes: int = Field(
        32 * 1024 * 1024,
        gt=1024,
        description="Largest frame accepted from a gateway (a row is ~1.2 KB).",
    )
    max_sessions: int = Field(
        100_000,
        ge=1,
        description="Most session rows one listing may hold; past it the gateway is a "
        "protocol error (never an out-of-memory kill, which would redeliver the scan).",
    )
    max_listing_bytes: int = Field(
        256 * 1024 * 1024,
        gt=1024,
        description="Most bytes the frames of one listing (all its pages) may add up to; past "
        "it the gateway is a protocol error.",
    )
    max_clock_offset: Duration = Field(
        86400.0,
        gt=0,
        description="A challenge `ts` further than this from our clock (one in seconds or "
        "microseconds, say) leaves the gateway's clock unknown: rows whose verdict needs "
        "it stay unknown.",
    )
    max_uptime: Duration = Field(
        10 * 365 * 86400.0,
        gt=0,
        description="A hello `uptimeMs` longer than this is not believed (boot time unknown).",
    )
    dry_run: bool = Field(False, description="Detect and audit, but send nothing mutating.")
    max_attempts: int = Field(3, ge=1, description="Failed recovery attempts before escalating.")
    backoff_base: Duration = Field(30.0, description="Wait after the first failed attempt.")
    backoff_factor: float = Field(2.0, ge=1, description="Each further wait is this much longer.")
    backoff_max: Duration = Field(1800.0, description="Longest wait between attempts.")
    backoff_jitter: float = Field(
        0.2, ge=0, le=1, description="Random share added or taken off each wait."
    )
    zombie_breaker_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="When more than this share of a gateway's sessions look like zombies at "
        "once, suspect a bug: act on none and escalate. 1 turns the breaker off.",
    )
    zombie_breaker_min: int = Field(
        5, ge=1, description="The zombie breaker needs at least this many zombies to open."
    )
    unreachable_after: int = Field(
        2,
        ge=1,
        description="Consecutive failed scans of a gateway (unreachable, timeout, auth) before "
        "one escalation for it; it resolves when a scan succeeds again.",
    )
    boot_grace: Duration = Field(
        0.0,
        description="After a gateway boots, leave its sessions to its own restart recovery "
        "this long (off by default).",
    )

    act_window: Duration = Field(
        0.25,
        description="A mutating step sends its request only if its final read of the session "
        "is at most this old (monotonic clock): past it the step stops as `stale_read` and the "
        "next scan decides again from a fresh read.",
    )
    max_heals_per_session: int = Field(
        3,
        ge=1,
        description="Resets of one session key within heal_budget_window before it counts as "
        "flapping: escalated once, then hands off until `clear` or the window passes.",
    )
    heal_budget_window: Duration = Field(
        86400.0, description="The window max_heals_per_session counts over."
    )
    max_heals_per_gateway_hour: int = Field(
        20,
        ge=1,
        description="Resets on one gateway within an hour before the supervisor stops "
        "resetting there (escalated once) until the hour has passed.",
    )

    def lane_timeout_for(self, key: str) -> float:
        """The lane timeout that applies to one session key."""
        for pattern, seconds in self.lane_timeouts.items():
            if fnmatch.fnmatchcase(key, pattern):
                return seconds
        return self.lane_timeout

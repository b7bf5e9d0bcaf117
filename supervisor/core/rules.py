"""The rules around the ladder, each defined once: healthy, closing, breakers, boot grace, limits.

Pure functions of facts passed in; the scanner and the worker start-up call them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from supervisor.core.detect import Verdict, VerdictKind
from supervisor.core.policy import Policy

#: verdicts of a session that works: nothing stuck (idle) or a run making progress (live)
HEALTHY = frozenset({VerdictKind.IDLE, VerdictKind.LIVE})


def is_healthy(verdict: Verdict) -> bool:
    """The one definition of a healthy session (healed, when it was under recovery)."""
    return verdict.kind in HEALTHY


def closes_episode(
    episode_session_id: str,
    now: Verdict | None,
    *,
    lease_held: bool,
    absence_confirmed: bool,
    flapping: bool = False,
) -> str | None:
    """Why a scan may close an open episode (healed or gone), or None to leave it open.

    An unhealthy row of the same session (or an unreadable one) keeps it open; a running
    attempt (lease held) closes its own episode in verify; absence counts only when a second,
    independent read confirms it (one listing can skip a row whose neighbours were deleted
    between two pages). A flapping session (counted by key) stays hands off until it is
    healthy: another sessionId on its key is no heal.
    """
    if flapping and (now is None or not is_healthy(now)):
        return None
    if now is None:
        if not absence_confirmed:
            return None
        return "no longer listed (confirmed by a second read)"
    if not is_healthy(now) and (
        now.session_id == episode_session_id or now.kind is VerdictKind.UNKNOWN
    ):
        return None
    if lease_held:
        return None
    return f"{now.kind.value}: {now.reason}"


def zombie_breaker_open(verdicts: Iterable[Verdict], policy: Policy) -> tuple[bool, int, int]:
    """Whether too many zombies at once smell like our bug, not theirs: (open, zombies, total)."""
    zombies = total = 0
    for v in verdicts:
        total += 1
        if v.kind is VerdictKind.ZOMBIE:
            zombies += 1
    is_open = (
        policy.zombie_breaker_share < 1
        and zombies >= policy.zombie_breaker_min
        and zombies > policy.zombie_breaker_share * total
    )
    return is_open, zombies, total


def unreachable_opens(failures: int, *, already_open: bool, policy: Policy) -> bool:
    """Whether this failed scan opens the gateway's unreachable escalation (once)."""
    return failures >= policy.unreachable_after and not already_open


def boot_grace_left(now_ms: float, boot_time_ms: float | None, policy: Policy) -> float | None:
    """Seconds since the boot while the gateway's own restart recovery goes first, else None."""
    if policy.boot_grace <= 0 or boot_time_ms is None:
        return None
    since_boot_s = (now_ms - boot_time_ms) / 1000
    return since_boot_s if since_boot_s < policy.boot_grace else None


def is_new_boot(previous_marker: str | None, marker: str | None) -> bool:
    """A restart since the last scan (the first scan of a gateway is no new boot)."""
    return previous_marker is not None and marker != previous_marker


@dataclass(frozen=True)
class Limits:
    """The process-wide time limits a step runs under."""

    lease_ttl_s: float
    step_hard_limit_s: float | None  # None: the pool enforces none (threads, solo)
    visibility_timeout_s: float
    act_window_s: float
    lease_margin_s: float


def limit_problems(limits: Limits) -> list[str]:
    """Why these limits would let a step act on a lease that is no longer its own.

    A step checks its lease deadline (TTL minus `lease_margin_s`, monotonic) right before it
    sends, so it never outlives its lease by itself; these keep the rest consistent: a step
    killed by its hard limit leaves the lease for the next scan, and the broker must not hand a
    second copy of a step to another worker while the lease still stands.
    """
    problems: list[str] = []
    if limits.lease_margin_s <= 0 or limits.lease_margin_s >= limits.lease_ttl_s:
        problems.append(
            f"lease margin {limits.lease_margin_s:g}s must be above 0 and below the lease TTL "
            f"{limits.lease_ttl_s:g}s"
        )
    if (
        limits.step_hard_limit_s is not None
        and limits.step_hard_limit_s + limits.act_window_s >= limits.lease_ttl_s
    ):
        problems.append(
            f"step hard time limit {limits.step_hard_limit_s:g}s + act_window "
            f"{limits.act_window_s:g}s is not below the lease TTL {limits.lease_ttl_s:g}s"
        )
    if limits.lease_ttl_s >= limits.visibility_timeout_s:
        problems.append(
            f"lease TTL {limits.lease_ttl_s:g}s is not below the broker's visibility timeout "
            f"{limits.visibility_timeout_s:g}s"
        )
    return problems

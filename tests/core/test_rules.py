"""The rules around the ladder: healthy, closing, breakers, boot grace, limits (pure)."""

from __future__ import annotations

import pytest

from supervisor.core.detect import Verdict, VerdictKind
from supervisor.core.policy import Policy
from supervisor.core.rules import (
    Limits,
    boot_grace_left,
    closes_episode,
    is_healthy,
    is_new_boot,
    limit_problems,
    unreachable_opens,
    zombie_breaker_open,
)

K = VerdictKind


def v(kind: VerdictKind, sid: str = "s1") -> Verdict:
    return Verdict(key="k", kind=kind, reason="r", session_id=sid)


@pytest.mark.parametrize("kind", list(VerdictKind))
def test_healthy_is_idle_or_live(kind: VerdictKind) -> None:
    assert is_healthy(v(kind)) is (kind in (K.IDLE, K.LIVE))


@pytest.mark.parametrize(
    ("now", "held", "confirmed", "closes"),
    [
        (v(K.IDLE), False, False, True),
        (v(K.LIVE), False, False, True),
        (v(K.IDLE), True, False, False),  # its own verify closes it
        (v(K.ZOMBIE), False, False, False),
        (v(K.UNKNOWN, sid="other"), False, False, False),
        (v(K.ZOMBIE, sid="other"), False, False, True),  # a new session on the key
        (None, False, False, False),  # one listing's word is not enough
        (None, False, True, True),
        (None, True, True, True),
    ],
)
def test_closes_episode(now: Verdict | None, held: bool, confirmed: bool, closes: bool) -> None:
    why = closes_episode("s1", now, lease_held=held, absence_confirmed=confirmed)
    assert (why is not None) is closes


@pytest.mark.parametrize(
    ("now", "closes"),
    [(v(K.ZOMBIE, sid="other"), False), (None, False), (v(K.IDLE, sid="other"), True)],
)
def test_a_flapping_episode_closes_only_when_healthy(now: Verdict | None, closes: bool) -> None:
    why = closes_episode("s1", now, lease_held=False, absence_confirmed=True, flapping=True)
    assert (why is not None) is closes


@pytest.mark.parametrize(
    ("zombies", "total", "share", "minimum", "is_open"),
    [
        (5, 8, 0.5, 5, True),
        (4, 4, 0.5, 5, False),  # under the minimum
        (5, 10, 0.5, 5, False),  # not over the share
        (6, 10, 0.5, 5, True),
        (100, 100, 1.0, 5, False),  # share 1 turns it off
    ],
)
def test_zombie_breaker(
    zombies: int, total: int, share: float, minimum: int, is_open: bool
) -> None:
    verdicts = [v(K.ZOMBIE)] * zombies + [v(K.IDLE)] * (total - zombies)
    policy = Policy(zombie_breaker_share=share, zombie_breaker_min=minimum)
    assert zombie_breaker_open(verdicts, policy) == (is_open, zombies, total)


@pytest.mark.parametrize(
    ("failures", "already", "opens"), [(1, False, False), (2, False, True), (5, True, False)]
)
def test_unreachable(failures: int, already: bool, opens: bool) -> None:
    assert unreachable_opens(failures, already_open=already, policy=Policy()) is opens


@pytest.mark.parametrize(
    ("grace", "boot", "now", "left"),
    [
        (0.0, 0.0, 1000.0, None),
        (60.0, None, 1000.0, None),
        (60.0, 0.0, 30_000.0, 30.0),
        (60.0, 0.0, 60_000.0, None),
    ],
)
def test_boot_grace(grace: float, boot: float | None, now: float, left: float | None) -> None:
    assert boot_grace_left(now, boot, Policy(boot_grace=grace)) == left


@pytest.mark.parametrize(
    ("before", "after", "new"), [(None, "a", False), ("a", "a", False), ("a", "b", True)]
)
def test_new_boot(before: str | None, after: str, new: bool) -> None:
    assert is_new_boot(before, after) is new


@pytest.mark.parametrize(
    ("ttl", "hard", "vis", "problems"),
    [
        (300.0, 120.0, 900.0, 0),
        (120.0, 120.0, 900.0, 1),  # hard limit + act window not below the TTL
        (1000.0, 120.0, 900.0, 1),  # TTL not below the visibility timeout
        (100.0, None, 900.0, 0),  # threads/solo: the steps' own deadline does it
        (2.0, 120.0, 900.0, 1),
    ],
)
def test_limits(ttl: float, hard: float | None, vis: float, problems: int) -> None:
    limits = Limits(
        lease_ttl_s=ttl, step_hard_limit_s=hard, visibility_timeout_s=vis, act_window_s=0.25,
        lease_margin_s=min(2.0, ttl / 10),
    )  # fmt: skip
    assert len(limit_problems(limits)) == problems

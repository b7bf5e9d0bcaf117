"""How long to wait before the next recovery attempt on a session: pure, no clock, no I/O.

Exponential in the attempt number, capped, with jitter so sessions that failed together (a
gateway restart) do not all retry in the same scan. The jitter is drawn from `random.Random`
seeded by the caller (e.g. gateway, session key and attempt): the same inputs always give the
same delay, so a redelivered task or a second worker computes the same "not before" time, and
tests can pin it. Long waits are stored as a "not before" time in Redis, never as a Celery
countdown (see stack notes: ETAs past the visibility timeout are delivered repeatedly).
"""

from __future__ import annotations

import math
import random


def compute_backoff(
    attempt: int,
    *,
    base_s: float,
    factor: float,
    max_s: float,
    jitter: float,
    seed: int | str,
) -> float:
    """Seconds to wait after the `attempt`-th attempt (1-based), before the next one.

    The deterministic delay is `min(max_s, base_s * factor ** (attempt - 1))`; `jitter` in
    [0, 1] then scales it by a factor drawn uniformly from [1 - jitter, 1] -- jitter only ever
    shortens the wait, so `max_s` stays a true cap and the result lies in
    [(1 - jitter) * delay, delay].
    """
    if attempt < 1:
        raise ValueError(f"attempts are counted from 1, not {attempt}")
    if base_s < 0 or max_s < 0:
        raise ValueError("base_s and max_s cannot be negative")
    if factor < 1:
        raise ValueError(f"a backoff factor below 1 would shrink the wait, got {factor}")
    if not 0 <= jitter <= 1:
        raise ValueError(f"jitter is a fraction in [0, 1], got {jitter}")
    # compare in log space: factor ** attempt overflows a float long before attempts run out
    if base_s == 0:
        delay = 0.0
    elif factor > 1 and (attempt - 1) * math.log(factor) >= math.log(max_s / base_s + 1e-300):
        delay = max_s
    else:
        delay = min(max_s, base_s * factor ** (attempt - 1))
    if jitter == 0 or delay == 0:
        return delay
    # random.Random(str) hashes with SHA-512, not hash(): stable across processes (PYTHONHASHSEED)
    fraction = random.Random(seed).random()
    return delay * (1 - jitter * fraction)


def backoff_seed(gateway: str, session_key: str, attempt: int) -> str:
    """The conventional seed: one jitter per (gateway, session, attempt), stable across workers."""
    return f"{len(gateway)}:{gateway}|{session_key}|{attempt}"

"""At most one request per interval per destination, across the threads of one process.

Slack allows about one message per second per incoming webhook and answers 429 beyond short
bursts; spacing requests out avoids the 429s instead of paying for them. The clock and the
sleep are injectable, so tests check the spacing without waiting. The limit is per process
(each Celery worker child has its own); a 429 that still happens is retried with Retry-After.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable


class MinInterval:
    """Grants one slot per `interval_s`; `acquire()` sleeps until the caller's slot comes."""

    def __init__(
        self,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if interval_s < 0:
            raise ValueError("an interval cannot be negative")
        self.interval_s = interval_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free: float | None = None

    def acquire(self) -> float:
        """Wait for the next free slot; the seconds waited (slot taken under the lock)."""
        with self._lock:
            now = self._clock()
            slot = now if self._next_free is None else max(now, self._next_free)
            self._next_free = slot + self.interval_s
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return wait


_SHARED: dict[tuple[str, float], MinInterval] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(destination: str, interval_s: float) -> MinInterval:
    """The process-wide limiter of one destination (keyed by a hash: URLs may be secrets)."""
    key = (hashlib.sha256(destination.encode()).hexdigest(), interval_s)
    with _SHARED_LOCK:
        limiter = _SHARED.get(key)
        if limiter is None:
            limiter = _SHARED[key] = MinInterval(interval_s)
        return limiter

"""WAIT for replicas after the writes that must survive a failover: fence increments, claims.

Redis replicates asynchronously: a primary that acknowledged a lease or a step claim and then
died before its replica saw the write hands a promoted replica a fence that repeats tokens and
step claims that never happened, so a second worker acts again. `WAIT n timeout` blocks until
`n` replicas acknowledged every write this connection made before it (it returns how many did).

`ReplicaWait` asks `INFO replication` how many replicas are connected (cached for
`refresh_s`), and when there are any, WAITs for `min(wanted, connected)` of them. Fewer
acknowledgements within the timeout is `RedisUnavailable`: the caller gives up its write and
does not act (retryable: the next scan decides again). With no replica connected it waits for
nothing: there is nothing to fail over to, and the durability check covers the one server.

WAIT counts the writes of the connection it runs on, so the write and the WAIT must share one:
`after(pipeline_or_client)` is called on the same pipeline, or the command is sent inside
a pipeline with the write (see `wait_in`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from supervisor.errors import RedisUnavailable
from supervisor.state.connection import describe, translate_errors

#: replicas asked for by default when the server has any
DEFAULT_WAIT_REPLICAS = 1
#: how long one WAIT may block (the write is already on the primary; the step waits this long)
DEFAULT_WAIT_TIMEOUT_S = 1.0
#: how long the connected-replica count from INFO replication is trusted
DEFAULT_REFRESH_S = 30.0


class ReplicaWait:
    """The one place that knows whether and how long to WAIT; thread-safe."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        wanted: int = DEFAULT_WAIT_REPLICAS,
        timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
        refresh_s: float = DEFAULT_REFRESH_S,
    ) -> None:
        if wanted < 0 or timeout_s <= 0:
            raise ValueError("wanted replicas >= 0 and a positive WAIT timeout")
        self._client = client
        self._where = describe(client)
        self.wanted = wanted
        self.timeout_ms = max(1, int(timeout_s * 1000))
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._connected = 0
        self._checked = -float("inf")

    def replicas_to_wait_for(self) -> int:
        """How many acknowledgements a write needs now (0: WAIT is skipped)."""
        if self.wanted == 0:
            return 0
        now = time.monotonic()
        with self._lock:
            if now - self._checked >= self.refresh_s:
                with translate_errors(self._where, "read INFO replication"):
                    info = self._client.info("replication")
                self._connected = int(info.get("connected_slaves", 0) or 0)
                self._checked = now
            return min(self.wanted, self._connected)

    def queue(self, pipe: Any) -> int:
        """Queue `WAIT` on `pipe` after its writes; returns how many acks it needs (0: none
        queued). The pipeline's result for it goes to `check`."""
        needed = self.replicas_to_wait_for()
        if needed:
            pipe.execute_command("WAIT", needed, self.timeout_ms)
        return needed

    def check(self, acked: object, needed: int, what: str) -> None:
        """Raise RedisUnavailable when fewer than `needed` replicas acknowledged `what`."""
        count = int(acked) if isinstance(acked, int | str) else 0
        if count < needed:
            raise RedisUnavailable(
                f"Redis at {self._where}: {what} reached {count} of {needed} replica(s) within "
                f"{self.timeout_ms} ms (WAIT); not acting on a write a failover could lose"
            )

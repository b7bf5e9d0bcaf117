"""The messages a reset of a held lane throws away, recorded before the reset is sent.

2026.9.6 drops every message waiting behind a dead lane when the lane is reset (measured): the
users who wrote during the outage are never answered. The reset step records each one here
first (an action whose record cannot be written is not taken), so the audit, the page and, with
`held_messages = "redeliver"`, the redeliver step know them after the reset. The text is kept
only for `redeliver` (a user's words are stored no longer and no more widely than needed).
"""

from __future__ import annotations

import redis
from pydantic import BaseModel, ConfigDict, TypeAdapter

from supervisor.state.connection import describe, translate_errors
from supervisor.state.keys import Keys

#: records outlive the attempt that wrote them (verify and redeliver come seconds later)
MIN_TTL_S = 24 * 3600
#: how far back `status` counts dropped and redelivered messages
SUMMARY_WINDOW_S = 24 * 3600


class DroppedSummary(BaseModel):
    """One recovery whose reset dropped held messages, as `status` counts it."""

    model_config = ConfigDict(frozen=True)

    key: str
    recovery_id: str
    dropped: int
    redelivered: int = 0
    since_ms: float | None = None


class HeldMessage(BaseModel):
    """One message that waited behind the dead lane when it was reset."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    #: when its user sent it (the gateway's `acceptedAt`, ms); None when it could not be read
    sent_at_ms: float | None = None
    #: its text, kept only for `redeliver` and only when the gateway let us read it
    text: str | None = None
    #: the text was read (even if not kept): length in characters, for the audit
    chars: int | None = None

    def __repr__(self) -> str:
        # never a user's words in a repr or a log line
        return f"HeldMessage(run_id={self.run_id!r}, sent_at_ms={self.sent_at_ms!r})"

    __str__ = __repr__


_LIST = TypeAdapter(list[HeldMessage])


class HeldMessages:
    """The held messages of each recovery, by recovery id."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys
        self._where = describe(client)

    def record(self, recovery_id: str, messages: list[HeldMessage], *, ttl_s: float) -> None:
        """Write (or rewrite: a redelivered reset reads the same) one recovery's messages."""
        redis_key = self._keys.held(recovery_id)
        with translate_errors(self._where, f"write {redis_key}"):
            self._client.set(redis_key, _LIST.dump_json(messages), ex=int(max(ttl_s, MIN_TTL_S)))

    def note_closed(self, gateway: str, summary: DroppedSummary, *, now_ms: float) -> None:
        """Count one closed recovery that dropped messages (for `status`, last 24 h)."""
        redis_key = self._keys.dropped(gateway)
        window_ms = SUMMARY_WINDOW_S * 1000
        with (
            translate_errors(self._where, f"write {redis_key}"),
            self._client.pipeline(transaction=True) as pipe,
        ):
            pipe.zadd(redis_key, {summary.model_dump_json(): now_ms})
            pipe.zremrangebyscore(redis_key, "-inf", now_ms - window_ms)
            pipe.pexpire(redis_key, window_ms)
            pipe.execute()

    def recent(self, gateway: str, *, now_ms: float) -> list[DroppedSummary]:
        """The closed recoveries of the last 24 h that dropped messages, oldest first."""
        redis_key = self._keys.dropped(gateway)
        with translate_errors(self._where, f"read {redis_key}"):
            raw = self._client.zrangebyscore(redis_key, now_ms - SUMMARY_WINDOW_S * 1000, "+inf")
        out = []
        for value in raw:
            if not isinstance(value, str | bytes):
                continue
            try:
                out.append(DroppedSummary.model_validate_json(value))
            except ValueError:
                continue  # a foreign value: skip it rather than fail `status`
        return out

    def load(self, recovery_id: str) -> list[HeldMessage] | None:
        """The recorded messages, oldest first; None when nothing was recorded."""
        redis_key = self._keys.held(recovery_id)
        with translate_errors(self._where, f"read {redis_key}"):
            raw = self._client.get(redis_key)
        if raw is None:
            return None
        try:
            messages = _LIST.validate_json(raw)
        except ValueError:
            return None  # a foreign value: treat as not recorded, never crash the step
        return sorted(messages, key=lambda m: (m.sent_at_ms is None, m.sent_at_ms or 0))

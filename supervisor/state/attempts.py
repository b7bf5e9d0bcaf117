"""Recovery attempts per session, with a "not before" time, and the escalated marker.

Counters are keyed by (gateway, session key, session id): a new session id on the same key (the
gateway reset it) starts from zero, and a counter nobody touches for `counter_ttl_s` disappears
by itself, so abandoned sessions leave nothing behind. The TTL is renewed by every attempt.

The backoff is computed by the caller (`supervisor.core.backoff`) and stored here as an absolute
`next_not_before_ms`, which the periodic scan compares with its clock: no Celery countdowns.
Times are ms since the epoch on the caller's clock.

The escalated marker says "a human has been asked; stop trying on this session". It is set
with NX so exactly one caller sees `True` from `mark_escalated` and sends the notification,
however many workers reach the cap at once.
"""

from __future__ import annotations

import redis
from pydantic import BaseModel, ConfigDict
from redis.typing import EncodableT, FieldT

from supervisor.state.connection import describe, translate_errors
from supervisor.state.keys import Keys

DEFAULT_COUNTER_TTL_S = 7 * 86400
#: last_error is a summary for operators, not a log: long messages are cut
MAX_ERROR_CHARS = 500

#: KEYS[1] attempts hash; ARGV[1] error. A plain HSET on an expired counter would recreate it
#: without count or TTL, so only an existing counter is written. Returns 1 when written.
RECORD_ERROR_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'last_error', ARGV[1])
  return 1
end
return 0
"""


class AttemptState(BaseModel):
    """What has been tried on one session so far."""

    model_config = ConfigDict(frozen=True)

    count: int
    next_not_before_ms: int
    first_seen_ms: int
    last_attempt_ms: int
    last_error: str | None = None

    def due(self, now_ms: float) -> bool:
        """Whether the backoff has passed at `now_ms`."""
        return now_ms >= self.next_not_before_ms


class Escalation(BaseModel):
    """Why and when a session was handed to a human."""

    model_config = ConfigDict(frozen=True)

    ts_ms: int
    reason: str


class Attempts:
    """Attempt counters and escalation markers in Redis."""

    def __init__(
        self, client: redis.Redis, keys: Keys, *, counter_ttl_s: int = DEFAULT_COUNTER_TTL_S
    ) -> None:
        if counter_ttl_s <= 0:
            raise ValueError("counter_ttl_s must be positive")
        self._client = client
        self._keys = keys
        self._ttl_s = counter_ttl_s
        self._where = describe(client)
        self._record_error = client.register_script(RECORD_ERROR_LUA)

    def record_attempt(
        self,
        gateway: str,
        key: str,
        session_id: str,
        *,
        now_ms: float,
        next_not_before_ms: float,
        error: str | None = None,
    ) -> int:
        """Count one more attempt and set when the next may start; the new count.

        One MULTI/EXEC: the increment, the times and the TTL land together or not at all.
        `error` (if given) replaces last_error; None leaves the previous one, so an attempt can
        be recorded when it starts and its error added later with `record_error`.
        """
        redis_key = self._keys.attempts(gateway, key, session_id)
        fields: dict[FieldT, EncodableT] = {
            "next_not_before_ms": int(next_not_before_ms),
            "last_attempt_ms": int(now_ms),
        }
        if error is not None:
            fields["last_error"] = error[:MAX_ERROR_CHARS]
        with (
            translate_errors(self._where, f"record an attempt in {redis_key}"),
            self._client.pipeline(transaction=True) as pipe,
        ):
            pipe.hincrby(redis_key, "count", 1)
            pipe.hsetnx(redis_key, "first_seen_ms", int(now_ms))
            pipe.hset(redis_key, mapping=fields)
            pipe.expire(redis_key, self._ttl_s)
            count, *_ = pipe.execute()
        return int(count)

    def record_error(self, gateway: str, key: str, session_id: str, error: str) -> bool:
        """Set last_error of an existing counter; False (nothing written) when there is none."""
        redis_key = self._keys.attempts(gateway, key, session_id)
        with translate_errors(self._where, f"record an error in {redis_key}"):
            done = self._record_error(keys=[redis_key], args=[error[:MAX_ERROR_CHARS]])
        return bool(done)

    def get(self, gateway: str, key: str, session_id: str) -> AttemptState | None:
        """The attempts so far, or None when there were none (or they expired)."""
        redis_key = self._keys.attempts(gateway, key, session_id)
        with translate_errors(self._where, f"read {redis_key}"):
            raw = self._client.hgetall(redis_key)
        if not raw or "count" not in raw:
            return None
        return AttemptState.model_validate(raw)

    def clear(self, gateway: str, key: str, session_id: str) -> None:
        """Forget the attempts on a session (it recovered); the escalated marker stays."""
        redis_key = self._keys.attempts(gateway, key, session_id)
        with translate_errors(self._where, f"delete {redis_key}"):
            self._client.delete(redis_key)

    def ttl_s(self, gateway: str, key: str, session_id: str) -> int | None:
        """Seconds until the counter expires, None when there is no counter."""
        redis_key = self._keys.attempts(gateway, key, session_id)
        with translate_errors(self._where, f"read the TTL of {redis_key}"):
            ttl = int(self._client.ttl(redis_key))
        return ttl if ttl >= 0 else None

    def mark_escalated(
        self, gateway: str, key: str, session_id: str, *, now_ms: float, reason: str
    ) -> bool:
        """Mark the session escalated; True only for the call that set the marker."""
        redis_key = self._keys.escalated(gateway, key, session_id)
        value = Escalation(ts_ms=int(now_ms), reason=reason[:MAX_ERROR_CHARS]).model_dump_json()
        with translate_errors(self._where, f"set {redis_key}"):
            created = self._client.set(redis_key, value, nx=True, ex=self._ttl_s)
        return bool(created)

    def is_escalated(self, gateway: str, key: str, session_id: str) -> bool:
        redis_key = self._keys.escalated(gateway, key, session_id)
        with translate_errors(self._where, f"read {redis_key}"):
            return bool(self._client.exists(redis_key))

    def escalation(self, gateway: str, key: str, session_id: str) -> Escalation | None:
        redis_key = self._keys.escalated(gateway, key, session_id)
        with translate_errors(self._where, f"read {redis_key}"):
            raw = self._client.get(redis_key)
        if raw is None:
            return None
        return Escalation.model_validate_json(str(raw))

    def clear_escalation(self, gateway: str, key: str, session_id: str) -> bool:
        """An operator's "try again": True when there was a marker to remove."""
        redis_key = self._keys.escalated(gateway, key, session_id)
        with translate_errors(self._where, f"delete {redis_key}"):
            return bool(self._client.delete(redis_key))

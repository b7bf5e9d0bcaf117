"""Heal budgets: how often the supervisor reset each session key and each gateway, in a window.

One sorted set per session key (members are recovery ids, scores the reset's time in ms) and
one per gateway: the counts the ladder compares with `max_heals_per_session` and
`max_heals_per_gateway_hour`. Keyed by session key, not sessionId: 2026.3.24 gives a session a
new id on every reset, so per-id counters would forget every heal. The `flapping` marker says
"escalated as flapping: hands off"; it expires with the window, or `clear` removes it.
"""

from __future__ import annotations

import redis

from supervisor.state.connection import describe, translate_errors
from supervisor.state.keys import Keys

HOUR_MS = 3_600_000


class Budgets:
    """Reset history per session key and per gateway, and the flapping marker."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys
        self._where = describe(client)

    def record_heal(
        self, gateway: str, key: str, recovery_id: str, *, now_ms: float, window_s: float
    ) -> None:
        """Count one reset of `key` (once per attempt, however often it is recorded)."""
        window_ms = int(max(window_s * 1000, HOUR_MS))
        session_set = self._keys.heals(gateway, key)
        gateway_set = self._keys.heals(gateway)
        with (
            translate_errors(self._where, f"write {session_set}"),
            self._client.pipeline(transaction=True) as pipe,
        ):
            for redis_key, keep_ms in ((session_set, int(window_s * 1000)), (gateway_set, HOUR_MS)):
                pipe.zadd(redis_key, {recovery_id: int(now_ms)})
                pipe.zremrangebyscore(redis_key, "-inf", int(now_ms) - keep_ms)
                pipe.pexpire(redis_key, window_ms)
            pipe.execute()

    def counts(
        self, gateway: str, key: str, *, now_ms: float, window_s: float
    ) -> tuple[list[int], int]:
        """Times (ms) of the key's resets within the window, and the gateway's in the last hour."""
        with (
            translate_errors(self._where, f"read {self._keys.heals(gateway, key)}"),
            self._client.pipeline(transaction=False) as pipe,
        ):
            pipe.zrangebyscore(
                self._keys.heals(gateway, key), int(now_ms - window_s * 1000), "+inf",
                withscores=True,
            )  # fmt: skip
            pipe.zcount(self._keys.heals(gateway), int(now_ms) - HOUR_MS, "+inf")
            history, gateway_count = pipe.execute()
        return [int(score) for _, score in history], int(gateway_count)

    def mark_flapping(self, gateway: str, key: str, *, ttl_s: float) -> bool:
        """Hands off `key` for `ttl_s`; True for exactly one caller (it pages)."""
        redis_key = self._keys.flapping(gateway, key)
        with translate_errors(self._where, f"write {redis_key}"):
            return bool(self._client.set(redis_key, "1", nx=True, px=max(1, int(ttl_s * 1000))))

    def is_flapping(self, gateway: str, key: str) -> bool:
        redis_key = self._keys.flapping(gateway, key)
        with translate_errors(self._where, f"read {redis_key}"):
            return bool(self._client.exists(redis_key))

    def clear_flapping(self, gateway: str, key: str) -> bool:
        """The session healed: lift its hands-off; True when it was flapping."""
        redis_key = self._keys.flapping(gateway, key)
        with translate_errors(self._where, f"delete {redis_key}"):
            return bool(self._client.delete(redis_key))

    def mark_gateway_over(self, gateway: str) -> bool:
        """The gateway spent its hourly budget; True for exactly one caller per hour (it pages)."""
        redis_key = self._keys.flapping(gateway)
        with translate_errors(self._where, f"write {redis_key}"):
            return bool(self._client.set(redis_key, "1", nx=True, px=HOUR_MS))

    def forget(self, gateway: str, key: str) -> None:
        """`clear`: the operator vouches for the session: its history and marker go."""
        with translate_errors(self._where, f"write {self._keys.heals(gateway, key)}"):
            self._client.delete(self._keys.heals(gateway, key), self._keys.flapping(gateway, key))

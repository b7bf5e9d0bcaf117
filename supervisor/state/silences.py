"""Silences: "I know, stop paging me about this" for a gateway or one session, for a while.

A silence is one Redis string holding its JSON, written with a PX expiry equal to its
duration, so it ends by itself even if nobody is around to lift it. A gateway silence covers
all of that gateway's sessions. `also_actions` asks the engine to keep its hands off too (a
human is working on the gateway); the engine checks it, this module only stores it.
"""

from __future__ import annotations

import json
import re
import time

import redis
from pydantic import BaseModel, ConfigDict, ValidationError

from supervisor.errors import SilenceError
from supervisor.state.connection import describe, translate_errors
from supervisor.state.keys import Keys

_GATEWAY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
#: a silence longer than this is a config change, not a silence
MAX_SILENCE_S = 90 * 86400
MAX_REASON_CHARS = 500


class Silence(BaseModel):
    """One active silence."""

    model_config = ConfigDict(frozen=True)

    gateway: str
    key: str | None = None
    reason: str
    also_actions: bool = False
    created_ms: int
    expires_ms: int
    created_by: str | None = None

    @property
    def target(self) -> str:
        return self.gateway if self.key is None else f"{self.gateway}/{self.key}"


def parse_target(target: str) -> tuple[str, str | None]:
    """`"GATEWAY"` or `"GATEWAY/SESSION KEY"` (split at the first '/') -> (gateway, key)."""
    gateway, sep, key = target.partition("/")
    if not _GATEWAY.match(gateway):
        raise SilenceError(
            f"silence target {target!r}: start with a gateway name (letters, digits, '.', '_', '-')"
        )
    if sep and not key:
        raise SilenceError(f"silence target {target!r}: the session key after '/' is empty")
    return gateway, (key if sep else None)


class Silences:
    """Create, find, list and lift silences."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys
        self._where = describe(client)

    def silence(
        self,
        target: str,
        for_s: float,
        reason: str,
        *,
        also_actions: bool = False,
        created_by: str | None = None,
        now_ms: int | None = None,
    ) -> Silence:
        """Silence `target` for `for_s` seconds (replacing any silence of the same target)."""
        gateway, key = parse_target(target)
        if not 0 < for_s <= MAX_SILENCE_S:
            raise SilenceError(f"silence of {target!r}: duration must be over 0 and at most 90d")
        if not reason.strip():
            raise SilenceError(f"silence of {target!r}: give a reason (who, why)")
        now = int(time.time() * 1000) if now_ms is None else now_ms
        ttl_ms = max(1, int(for_s * 1000))
        silence = Silence(
            gateway=gateway,
            key=key,
            reason=reason.strip()[:MAX_REASON_CHARS],
            also_actions=also_actions,
            created_ms=now,
            expires_ms=now + ttl_ms,
            created_by=created_by,
        )
        redis_key = self._keys.silence(gateway, key)
        with translate_errors(self._where, f"write silence {redis_key}"):
            self._client.set(redis_key, silence.model_dump_json(), px=ttl_ms)
        return silence

    def is_silenced(self, gateway: str, key: str | None = None) -> Silence | None:
        """The silence covering (gateway, key), if any.

        With both a gateway and a session silence, the one that also stops actions wins, then
        the one lasting longer: the caller gets the most restrictive answer.
        """
        names = [self._keys.silence(gateway)]
        if key is not None:
            names.append(self._keys.silence(gateway, key))
        with translate_errors(self._where, f"read silences of {gateway!r}"):
            values = self._client.mget(names)
        found = [s for s in (_parse(v) for v in values) if s is not None]
        if not found:
            return None
        return max(found, key=lambda s: (s.also_actions, s.expires_ms))

    def list(self, gateway: str | None = None) -> list[Silence]:
        """Every active silence (of one gateway), soonest to expire first."""
        with translate_errors(self._where, "list silences"):
            names = sorted(self._client.scan_iter(match=self._keys.silences(), count=500))
            values = self._client.mget(names) if names else []
        found = [s for s in (_parse(v) for v in values) if s is not None]
        if gateway is not None:
            found = [s for s in found if s.gateway == gateway]
        return sorted(found, key=lambda s: (s.expires_ms, s.target))

    def unsilence(self, target: str) -> bool:
        """Lift the silence of exactly `target`; whether there was one."""
        gateway, key = parse_target(target)
        redis_key = self._keys.silence(gateway, key)
        with translate_errors(self._where, f"delete silence {redis_key}"):
            return bool(self._client.delete(redis_key))


def _parse(value: object) -> Silence | None:
    if not isinstance(value, str):
        return None
    try:
        return Silence.model_validate(json.loads(value))
    except (ValueError, ValidationError):
        return None  # not ours or from a newer version: ignore rather than block paging

"""Paging incidents in Redis: one per dedup key, opened, re-notified and resolved atomically.

Dedup keys: `<gateway>/<session key>` for a session (stuck, escalated), `<gateway>` for the
gateway itself (unreachable, breaker open); see `escalation.models.dedup_key_for`.

Life of an incident (one hash `incident:<dedup key>`, indexed in `incidents:open` and
`incidents:resolving`):

    open_or_renotify  absent/resolving -> open, seq 1: send a trigger           (why "new")
                      open, more severe now -> seq+1: send a trigger at once    ("escalated")
                      open, renotify interval passed -> seq+1: send again        ("renotify")
                      otherwise -> nothing to send (details refreshed)          ("quiet")
    resolve           open -> resolving, seq+1: send a resolve to every provider a trigger
                      was meant for; exactly one caller gets the incident back
    record_delivery   after the resolve reached every provider (or was refused for good),
                      the hash is deleted

Every transition is one Lua script, so workers racing on one incident produce exactly one
trigger and one resolve. Each notification has a number (`seq`); each provider has its own
delivery state for it (`p:<provider>:seq|state|tries|nb|reason|ts|lease|owner` fields), so a
provider that failed is retried later (`due_deliveries`) without sending again to the ones that
got it, and a delivery for an older notification is recognised as stale and dropped.
`claim_delivery` holds a short per-provider lease so two workers do not send the same
notification to one provider at once, and a resolve never overtakes a trigger still in flight.

Hashes carry a TTL: an open incident nobody mentions for `open_ttl_s` (a gateway removed from
the fleet) disappears, and so does a resolve nobody managed to deliver within `resolved_ttl_s`.
Times are ms since the epoch on the caller's clock. Single-node Redis (scripts touch two keys).
The scripts are module constants (as celery-redbeat keeps its own), registered once per client
and run by SHA. This module knows nothing of providers: it takes any event and delivery result
with the fields of `IncidentFacts` and `DeliveryOutcome`, and `escalation.pager` turns a stored
`Incident` back into the event a provider is sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

import redis
from pydantic import BaseModel, ConfigDict, Field

from supervisor.state.connection import describe, translate_errors
from supervisor.state.keys import Keys

DEFAULT_OPEN_TTL_S = 7 * 86400
DEFAULT_RESOLVED_TTL_S = 86400
MAX_REASON_CHARS = 300

#: KEYS[1] incident, KEYS[2] open zset, KEYS[3] resolving zset. ARGV: 1 now_ms, 2 renotify_ms
#: (0: never), 3 ttl_s, 4 dedup key, 5 gateway, 6 session key ('' for none), 7 kind,
#: 8 severity, 9 severity rank, 10 labels JSON, 11 details JSON, 12 providers (comma list).
#: Returns {seq, why}; why is new, escalated or renotify (send now) or quiet (do not).
OPEN_LUA = """
local h = KEYS[1]
local now = tonumber(ARGV[1])
local function merge(csv, more)
  local out = csv
  for name in string.gmatch(more, '[^,]+') do
    if not string.find(',' .. out .. ',', ',' .. name .. ',', 1, true) then
      if out == '' then out = name else out = out .. ',' .. name end
    end
  end
  return out
end
if redis.call('HGET', h, 'status') == 'open' then
  local seq = tonumber(redis.call('HGET', h, 'seq'))
  local rank = tonumber(redis.call('HGET', h, 'rank'))
  local new_rank = tonumber(ARGV[9])
  local renotify = tonumber(ARGV[2])
  local why = 'quiet'
  if new_rank > rank then
    why = 'escalated'
  elseif renotify > 0 and now - tonumber(redis.call('HGET', h, 'notified_ms')) >= renotify then
    why = 'renotify'
  end
  redis.call('HSET', h, 'last_seen_ms', ARGV[1], 'labels', ARGV[10], 'details', ARGV[11])
  if new_rank >= rank then
    redis.call('HSET', h, 'kind', ARGV[7], 'severity', ARGV[8], 'rank', ARGV[9])
  end
  redis.call('EXPIRE', h, ARGV[3])
  if why == 'quiet' then
    return {seq, why}
  end
  seq = seq + 1
  local targets = merge(redis.call('HGET', h, 'targets') or '', ARGV[12])
  redis.call('HSET', h, 'seq', seq, 'notified_ms', ARGV[1], 'providers', ARGV[12],
    'targets', targets)
  return {seq, why}
end
redis.call('DEL', h)
redis.call('ZREM', KEYS[3], ARGV[4])
redis.call('HSET', h, 'dedup_key', ARGV[4], 'gateway', ARGV[5], 'key', ARGV[6], 'kind', ARGV[7],
  'severity', ARGV[8], 'rank', ARGV[9], 'labels', ARGV[10], 'details', ARGV[11],
  'status', 'open', 'seq', 1, 'opened_ms', ARGV[1], 'notified_ms', ARGV[1],
  'last_seen_ms', ARGV[1], 'providers', ARGV[12], 'targets', ARGV[12])
redis.call('EXPIRE', h, ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[4])
return {1, 'new'}
"""

#: KEYS[1] incident, KEYS[2] open zset, KEYS[3] resolving zset. ARGV: 1 now_ms, 2 dedup key,
#: 3 resolved ttl_s. Returns the incident's fields after the change (HGETALL), or nil when it
#: was not open. With no provider to tell, the hash is deleted at once.
RESOLVE_LUA = """
local h = KEYS[1]
if redis.call('HGET', h, 'status') ~= 'open' then
  return false
end
redis.call('ZREM', KEYS[2], ARGV[2])
local seq = tonumber(redis.call('HGET', h, 'seq')) + 1
local targets = redis.call('HGET', h, 'targets') or ''
redis.call('HSET', h, 'status', 'resolved', 'seq', seq, 'resolved_ms', ARGV[1],
  'notified_ms', ARGV[1], 'providers', targets)
local fields = redis.call('HGETALL', h)
if targets == '' then
  redis.call('DEL', h)
else
  redis.call('EXPIRE', h, ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
end
return fields
"""

#: KEYS[1] incident. ARGV: 1 provider, 2 seq, 3 now_ms, 4 lease_ms, 5 owner.
#: Returns ok (claimed), gone, stale (another notification now, or not for this provider),
#: busy (another delivery to this provider in flight), done (delivered or refused for good)
#: or wait (its retry time has not come).
CLAIM_LUA = """
local h = KEYS[1]
local seq = redis.call('HGET', h, 'seq')
if not seq then
  return 'gone'
end
local providers = redis.call('HGET', h, 'providers') or ''
if seq ~= ARGV[2] or not string.find(',' .. providers .. ',', ',' .. ARGV[1] .. ',', 1, true) then
  return 'stale'
end
local p = 'p:' .. ARGV[1] .. ':'
local now = tonumber(ARGV[3])
if tonumber(redis.call('HGET', h, p .. 'lease') or '0') > now then
  return 'busy'
end
if redis.call('HGET', h, p .. 'seq') == ARGV[2] then
  local state = redis.call('HGET', h, p .. 'state')
  if state == 'ok' or state == 'failed' then
    return 'done'
  end
  if tonumber(redis.call('HGET', h, p .. 'nb') or '0') > now then
    return 'wait'
  end
end
redis.call('HSET', h, p .. 'lease', now + tonumber(ARGV[4]), p .. 'owner', ARGV[5])
return 'ok'
"""

#: KEYS[1] incident, KEYS[2] resolving zset. ARGV: 1 provider, 2 seq, 3 owner, 4 state
#: (ok, retry, failed), 5 not-before ms, 6 reason, 7 dedup key, 8 now_ms.
#: Releases the caller's lease; records the state only for the current notification.
#: Returns 0 (stale, not recorded), 1 (recorded) or 2 (recorded, resolve complete, deleted).
RECORD_LUA = """
local h = KEYS[1]
if redis.call('EXISTS', h) == 0 then
  return 0
end
local p = 'p:' .. ARGV[1] .. ':'
if redis.call('HGET', h, p .. 'owner') == ARGV[3] then
  redis.call('HDEL', h, p .. 'lease', p .. 'owner')
end
if redis.call('HGET', h, 'seq') ~= ARGV[2] then
  return 0
end
local tries = 1
if redis.call('HGET', h, p .. 'seq') == ARGV[2] then
  tries = tonumber(redis.call('HGET', h, p .. 'tries') or '0') + 1
end
redis.call('HSET', h, p .. 'seq', ARGV[2], p .. 'state', ARGV[4], p .. 'tries', tries,
  p .. 'nb', ARGV[5], p .. 'reason', ARGV[6], p .. 'ts', ARGV[8])
if redis.call('HGET', h, 'status') == 'resolved' then
  for name in string.gmatch(redis.call('HGET', h, 'providers') or '', '[^,]+') do
    local q = 'p:' .. name .. ':'
    if redis.call('HGET', h, q .. 'seq') ~= ARGV[2]
        or redis.call('HGET', h, q .. 'state') == 'retry' then
      return 1
    end
  end
  redis.call('DEL', h)
  redis.call('ZREM', KEYS[2], ARGV[7])
  return 2
end
return 1
"""

DeliveryState = Literal["ok", "retry", "failed"]
#: a detail of an incident: a JSON scalar
DetailValue = str | int | float | bool | None


class IncidentFacts(Protocol):
    """What opening an incident reads from an event (`escalation.models.IncidentEvent` is one)."""

    @property
    def dedup_key(self) -> str: ...
    @property
    def gateway(self) -> str: ...
    @property
    def key(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def severity(self) -> str | None: ...
    @property
    def rank(self) -> int:
        """The severity's rank: a higher one re-notifies at once."""
        ...

    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def details(self) -> Mapping[str, DetailValue]: ...


class DeliveryOutcome(Protocol):
    """How one delivery went (`escalation.models.DeliveryResult` is one)."""

    @property
    def provider(self) -> str: ...
    @property
    def dedup_key(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def retryable(self) -> bool: ...
    @property
    def reason(self) -> str | None: ...


class ProviderDelivery(BaseModel):
    """Where one provider stands with the incident's notifications."""

    model_config = ConfigDict(frozen=True)

    #: the notification this state is about (older than the incident's seq: not sent yet)
    seq: int
    state: DeliveryState
    tries: int = 0
    not_before_ms: int = 0
    reason: str | None = None
    ts_ms: int = 0


class OpenDecision(BaseModel):
    """What `open_or_renotify` decided: send the trigger numbered `seq` now, or not."""

    model_config = ConfigDict(frozen=True)

    send: bool
    seq: int
    why: Literal["new", "escalated", "renotify", "quiet"]


class Incident(BaseModel):
    """One incident as stored."""

    model_config = ConfigDict(frozen=True)

    dedup_key: str
    gateway: str
    key: str | None
    kind: str
    #: the paging severity (info, warning, error, critical), as the event had it
    severity: str
    labels: dict[str, str] = Field(default_factory=dict)
    details: dict[str, DetailValue] = Field(default_factory=dict)
    status: Literal["open", "resolved"]
    seq: int
    opened_ms: int
    notified_ms: int
    last_seen_ms: int
    resolved_ms: int | None = None
    #: providers the current notification goes to
    providers: tuple[str, ...] = ()
    #: every provider a trigger was meant for: the resolve goes to all of them
    targets: tuple[str, ...] = ()
    deliveries: dict[str, ProviderDelivery] = Field(default_factory=dict)
    #: providers with a delivery in flight -> lease end (ms)
    leases: dict[str, int] = Field(default_factory=dict)

    def delivered(self, provider: str) -> bool:
        """Whether `provider` has the current notification (or refused it for good)."""
        state = self.deliveries.get(provider)
        return state is not None and state.seq == self.seq and state.state != "retry"

    def pending(self, now_ms: int, *, grace_ms: int = 0) -> tuple[str, ...]:
        """Providers that should get the current notification now.

        Never tried: once `grace_ms` passed since it was issued (the issuer sends it first).
        Failed retryably: once its not-before time passed. Never while a delivery is in flight.
        """
        due = []
        for name in self.providers:
            if self.leases.get(name, 0) > now_ms:
                continue
            state = self.deliveries.get(name)
            if state is None or state.seq != self.seq:
                if now_ms - self.notified_ms >= grace_ms:
                    due.append(name)
            elif state.state == "retry" and state.not_before_ms <= now_ms:
                due.append(name)
        return tuple(due)


#: hash fields copied as they are (pydantic converts the numbers)
_PLAIN_FIELDS = (
    "dedup_key",
    "gateway",
    "kind",
    "severity",
    "status",
    "seq",
    "opened_ms",
    "notified_ms",
    "last_seen_ms",
    "resolved_ms",
)


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(p for p in (value or "").split(",") if p)


def _parse(fields: dict[str, str]) -> Incident | None:
    if "status" not in fields:
        return None
    deliveries: dict[str, ProviderDelivery] = {}
    leases: dict[str, int] = {}
    for name in {f.split(":")[1] for f in fields if f.startswith("p:") and f.count(":") == 2}:
        p = f"p:{name}:"
        if p + "lease" in fields:
            leases[name] = int(fields[p + "lease"])
        if p + "state" in fields:
            deliveries[name] = ProviderDelivery.model_validate(
                {
                    "seq": fields[p + "seq"],
                    "state": fields[p + "state"],
                    "tries": fields.get(p + "tries", "0"),
                    "not_before_ms": fields.get(p + "nb", "0"),
                    "reason": fields.get(p + "reason") or None,
                    "ts_ms": fields.get(p + "ts", "0"),
                }
            )
    return Incident.model_validate(
        {
            **{f: fields[f] for f in _PLAIN_FIELDS if f in fields},
            "key": fields.get("key") or None,
            "labels": json.loads(fields.get("labels") or "{}"),
            "details": json.loads(fields.get("details") or "{}"),
            "providers": _csv(fields.get("providers")),
            "targets": _csv(fields.get("targets")),
            "deliveries": deliveries,
            "leases": leases,
        }
    )


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    """HGETALL as returned by a script (a flat list) -> dict."""
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


def _now_ms() -> int:
    return int(time.time() * 1000)


class Incidents:
    """Incident lifecycle and per-provider delivery state; thread-safe."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        open_ttl_s: int = DEFAULT_OPEN_TTL_S,
        resolved_ttl_s: int = DEFAULT_RESOLVED_TTL_S,
    ) -> None:
        if open_ttl_s <= 0 or resolved_ttl_s <= 0:
            raise ValueError("incident TTLs must be positive")
        if not client.get_encoder().decode_responses:
            raise ValueError("Incidents needs a client built with decode_responses=True")
        self._client = client
        self._keys = keys
        self._open_ttl_s = open_ttl_s
        self._resolved_ttl_s = resolved_ttl_s
        self._where = describe(client)
        self._open = client.register_script(OPEN_LUA)
        self._resolve = client.register_script(RESOLVE_LUA)
        self._claim = client.register_script(CLAIM_LUA)
        self._record = client.register_script(RECORD_LUA)

    # -- lifecycle -------------------------------------------------------------------------

    def open_or_renotify(
        self,
        event: IncidentFacts,
        *,
        providers: Iterable[str],
        renotify_after_s: float,
        now_ms: int | None = None,
    ) -> OpenDecision:
        """Open the incident of `event` or refresh it; whether to send a trigger now.

        `event.severity` must be set (the dispatcher's mapping), `event.rank` its rank;
        `providers` are the ones the trigger goes to (the route's). Atomic: of N callers
        racing on a new incident exactly one gets `send=True`.
        """
        if event.severity is None:
            raise ValueError("open_or_renotify needs an event with its severity set")
        now = _now_ms() if now_ms is None else now_ms
        names = list(providers)
        if any("," in n or ":" in n for n in names):
            raise ValueError("provider names cannot contain ',' or ':'")
        redis_key = self._keys.incident(event.dedup_key)
        with translate_errors(self._where, f"open incident {redis_key}"):
            seq, why = self._open(
                keys=[redis_key, self._keys.incidents_open, self._keys.incidents_resolving],
                args=[
                    now,
                    int(renotify_after_s * 1000),
                    self._open_ttl_s,
                    event.dedup_key,
                    event.gateway,
                    event.key or "",
                    event.kind,
                    event.severity,
                    event.rank,
                    json.dumps(event.labels, sort_keys=True),
                    json.dumps(event.details, sort_keys=True),
                    ",".join(names),
                ],
            )
        return OpenDecision.model_validate({"send": why != "quiet", "seq": seq, "why": why})

    def resolve(self, dedup_key: str, *, now_ms: int | None = None) -> Incident | None:
        """Close an open incident: the incident (status resolved, `providers` = where the
        resolve must go) to the one caller that closed it, None to everyone else."""
        now = _now_ms() if now_ms is None else now_ms
        redis_key = self._keys.incident(dedup_key)
        with translate_errors(self._where, f"resolve incident {redis_key}"):
            flat = self._resolve(
                keys=[redis_key, self._keys.incidents_open, self._keys.incidents_resolving],
                args=[now, dedup_key, self._resolved_ttl_s],
            )
        return None if not flat else _parse(_pairs(flat))

    def touch(self, dedup_key: str) -> bool:
        """Renew an incident's TTL without notifying (it is still there, but silenced)."""
        redis_key = self._keys.incident(dedup_key)
        with translate_errors(self._where, f"touch incident {redis_key}"):
            return bool(self._client.expire(redis_key, self._open_ttl_s))

    def get(self, dedup_key: str) -> Incident | None:
        redis_key = self._keys.incident(dedup_key)
        with translate_errors(self._where, f"read incident {redis_key}"):
            fields = self._client.hgetall(redis_key)
        return _parse({str(k): str(v) for k, v in fields.items()}) if fields else None

    def list_open(self, gateway: str | None = None) -> list[Incident]:
        """Open incidents (of one gateway), oldest first; for `lane-supervisor incidents`."""
        return [
            i
            for i in self._load(self._keys.incidents_open)
            if i.status == "open" and (gateway is None or i.gateway == gateway)
        ]

    def list_resolving(self) -> list[Incident]:
        """Resolved incidents whose resolve has not reached every provider yet."""
        return [i for i in self._load(self._keys.incidents_resolving) if i.status == "resolved"]

    def _load(self, index: str) -> list[Incident]:
        with translate_errors(self._where, f"read {index}"):
            dedup_keys = [str(k) for k in self._client.zrange(index, 0, -1)]
            if not dedup_keys:
                return []
            with self._client.pipeline(transaction=False) as pipe:
                for dedup_key in dedup_keys:
                    pipe.hgetall(self._keys.incident(dedup_key))
                rows = pipe.execute()
            gone = [k for k, row in zip(dedup_keys, rows, strict=True) if not row]
            if gone:  # expired by TTL: drop them from the index
                self._client.zrem(index, *gone)
        parsed = (_parse({str(k): str(v) for k, v in row.items()}) for row in rows if row)
        return [i for i in parsed if i is not None]

    # -- deliveries ------------------------------------------------------------------------

    def claim_delivery(
        self,
        dedup_key: str,
        provider: str,
        seq: int,
        *,
        owner: str,
        lease_ms: int,
        now_ms: int | None = None,
    ) -> str:
        """Take the right to send notification `seq` to `provider` for `lease_ms`.

        "ok" when taken; otherwise why not: gone, stale, busy, done or wait (see CLAIM_LUA).
        """
        now = _now_ms() if now_ms is None else now_ms
        redis_key = self._keys.incident(dedup_key)
        with translate_errors(self._where, f"claim delivery on {redis_key}"):
            answer = self._claim(keys=[redis_key], args=[provider, seq, now, lease_ms, owner])
        return str(answer)

    def record_delivery(
        self,
        result: DeliveryOutcome,
        seq: int,
        *,
        owner: str = "",
        not_before_ms: int = 0,
        give_up: bool = False,
        now_ms: int | None = None,
    ) -> int:
        """Store how notification `seq` went for `result.provider`, releasing `owner`'s claim.

        A retryable failure is stored as "retry" (due again at `not_before_ms`) unless
        `give_up`, which stores it as failed like a permanent one. Returns 0 when the
        notification is no longer current (nothing stored), 1 when stored, 2 when that
        completed a resolve and the incident is gone.
        """
        now = _now_ms() if now_ms is None else now_ms
        if result.ok:
            state = "ok"
        elif result.retryable and not give_up:
            state = "retry"
        else:
            state = "failed"
        reason = (result.reason or "")[:MAX_REASON_CHARS]
        redis_key = self._keys.incident(result.dedup_key)
        with translate_errors(self._where, f"record delivery on {redis_key}"):
            answer = self._record(
                keys=[redis_key, self._keys.incidents_resolving],
                args=[
                    result.provider,
                    seq,
                    owner,
                    state,
                    not_before_ms,
                    reason,
                    result.dedup_key,
                    now,
                ],
            )
        return int(answer)

    def due_deliveries(
        self, *, now_ms: int | None = None, grace_ms: int = 60_000
    ) -> list[tuple[Incident, str]]:
        """(incident, provider) pairs whose current notification should be sent now."""
        now = _now_ms() if now_ms is None else now_ms
        out: list[tuple[Incident, str]] = []
        for incident in (*self.list_open(), *self.list_resolving()):
            out.extend((incident, p) for p in incident.pending(now, grace_ms=grace_ms))
        return out

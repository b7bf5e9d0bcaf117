"""Which sessions of a gateway have an open episode, step claims, and per-gateway scan state.

A scan must learn, for the sessions it saw healthy, whether any of them had been under recovery
(so the attempt counters, the escalation marker and the incident can be closed) without a Redis
read or write per healthy session. So every session under recovery or escalated is listed in one
hash per gateway (`active`): the scan reads that hash once and touches only its members.

Step claims make each step of an attempt run at most once: Celery on Redis delivers a task at
least once (redelivery after the visibility timeout, a lost ack, a worker killed with
`reject_on_worker_lost`), so a mutating step first claims `(recovery id, step)` with SET NX. A
copy that finds the claim taken does nothing. A claim whose worker died before acting leaves the
step undone: the attempt then fails, its lease expires and the next scan starts a new attempt
(never a blind repeat of a mutation that may have been sent).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict
from redis.typing import EncodableT, FieldT

from supervisor.errors import RedisUnavailable, StateError
from supervisor.state.connection import describe, translate_errors
from supervisor.state.keys import Keys
from supervisor.state.replication import ReplicaWait

#: claims outlive any redelivery (the visibility timeout) by far
DEFAULT_CLAIM_TTL_S = 24 * 3600


class OpenEpisode(BaseModel):
    """A session the supervisor is working on or has escalated."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    verdict: str
    since_ms: int
    escalated: bool = False
    recovery_id: str | None = None


class StepClaim(BaseModel):
    """Where one step of one attempt stands."""

    model_config = ConfigDict(frozen=True)

    state: str  # new | started | done | missing
    answer: str | None = None

    @classmethod
    def parse(cls, value: object) -> StepClaim:
        if value is None:
            return cls(state="missing")
        kind, _, rest = str(value).partition("|")
        if kind == "done":
            return cls(state="done", answer=rest)
        return cls(state="started")


class GatewayState(BaseModel):
    """What the last scans of one gateway learned (for boot sweeps, breakers and `status`)."""

    model_config = ConfigDict(frozen=True)

    protocol: int | None = None
    boot_marker: str | None = None
    boot_seen_ms: int | None = None
    last_scan_ms: int | None = None
    last_error: str | None = None
    last_error_kind: str | None = None
    failures: int = 0
    unreachable_open: bool = False
    breaker_open: bool = False
    counts: dict[str, int] = {}
    #: messages waiting behind held and zombie lanes at the last scan (None: unknown)
    messages_waiting: int | None = None
    #: messages queued on session lanes per `diagnostics.lanes` (None: unknown or none)
    lane_queued: int | None = None


class Episodes:
    """Open episodes, step claims and gateway state in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        claim_ttl_s: int = DEFAULT_CLAIM_TTL_S,
        replicas: ReplicaWait | None = None,
    ) -> None:
        self._client = client
        self._keys = keys
        self._claim_ttl_s = claim_ttl_s
        self._where = describe(client)
        #: WAITs for replicas after a step claim (None: never)
        self._replicas = replicas

    # -- open episodes -----------------------------------------------------------------------

    def open_episodes(self, gateway: str) -> dict[str, OpenEpisode]:
        """Session key -> open episode, for one gateway (one HGETALL)."""
        redis_key = self._keys.active(gateway)
        with translate_errors(self._where, f"read {redis_key}"):
            raw = self._client.hgetall(redis_key)
        out: dict[str, OpenEpisode] = {}
        for key, value in raw.items():
            try:
                out[str(key)] = OpenEpisode.model_validate_json(str(value))
            except ValueError:
                continue  # a foreign or older value: skip it rather than stop the scan
        return out

    def open(self, gateway: str, key: str, episode: OpenEpisode) -> None:
        redis_key = self._keys.active(gateway)
        with translate_errors(self._where, f"write {redis_key}"):
            self._client.hset(redis_key, key, episode.model_dump_json())

    def close(self, gateway: str, key: str) -> bool:
        """Forget the open episode of one session; True when there was one."""
        redis_key = self._keys.active(gateway)
        with translate_errors(self._where, f"write {redis_key}"):
            return bool(self._client.hdel(redis_key, key))

    # -- step claims -------------------------------------------------------------------------

    def claim_step(self, recovery_id: str, step: str, owner: str) -> StepClaim:
        """Claim one step of one attempt: `new` for exactly one caller; the others learn
        whether it is `done` (and its answer) or only `started` (running, or its worker died)."""
        redis_key = self._keys.step_claim(recovery_id, step)
        mine = f"started|{owner}"
        with translate_errors(self._where, f"claim {redis_key}"):
            needed, acked = 0, 0
            if self._replicas is None:
                claimed = self._client.set(redis_key, mine, nx=True, ex=self._claim_ttl_s)
            else:
                # one pipeline, so WAIT runs on the connection that made the write
                with self._client.pipeline(transaction=False) as pipe:
                    pipe.set(redis_key, mine, nx=True, ex=self._claim_ttl_s)
                    needed = self._replicas.queue(pipe)
                    claimed, *rest = pipe.execute()
                acked = rest[0] if rest else 0
            if not claimed:
                return StepClaim.parse(self._client.get(redis_key))
        if needed and self._replicas is not None:
            try:
                self._replicas.check(acked, needed, f"step claim {redis_key}")
            except RedisUnavailable:
                # a claim a failover could forget is no claim: withdraw it, act on nothing
                with contextlib.suppress(StateError), translate_errors(self._where, "withdraw"):
                    if self._client.get(redis_key) == mine:
                        self._client.delete(redis_key)
                raise
        return StepClaim(state="new")

    def step_claim(self, recovery_id: str, step: str) -> StepClaim:
        redis_key = self._keys.step_claim(recovery_id, step)
        with translate_errors(self._where, f"read {redis_key}"):
            return StepClaim.parse(self._client.get(redis_key))

    def finish_step(self, recovery_id: str, step: str, answer: str) -> None:
        """Record what the gateway answered, for a redelivered copy to resume from."""
        redis_key = self._keys.step_claim(recovery_id, step)
        with translate_errors(self._where, f"write {redis_key}"):
            self._client.set(redis_key, f"done|{answer}", ex=self._claim_ttl_s)

    def count_delivery(self, task_id: str) -> int:
        """How often this task has started (a redelivered task counts again)."""
        redis_key = self._keys.step_claim(task_id, "deliveries")
        with (
            translate_errors(self._where, f"count {redis_key}"),
            self._client.pipeline(transaction=True) as pipe,
        ):
            pipe.incr(redis_key)
            pipe.expire(redis_key, self._claim_ttl_s)
            count, _ = pipe.execute()
        return int(count)

    # -- fleet-wide flags --------------------------------------------------------------------

    def raise_flag(self, name: str) -> bool:
        """Set a fleet-wide flag; True for exactly one caller however many race (SET NX)."""
        redis_key = self._keys.flag(name)
        with translate_errors(self._where, f"write {redis_key}"):
            return bool(self._client.set(redis_key, "1", nx=True))

    def lower_flag(self, name: str) -> bool:
        """Clear a fleet-wide flag; True for the one caller that found it set."""
        redis_key = self._keys.flag(name)
        with translate_errors(self._where, f"write {redis_key}"):
            return bool(self._client.delete(redis_key))

    # -- gateway state -----------------------------------------------------------------------

    def gateway_state(self, gateway: str) -> GatewayState:
        redis_key = self._keys.gateway_state(gateway)
        with translate_errors(self._where, f"read {redis_key}"):
            raw = self._client.hgetall(redis_key)
        data: dict[str, Any] = {}
        for name, value in raw.items():
            try:
                data[str(name)] = json.loads(value)
            except ValueError:
                data[str(name)] = value
        try:
            return GatewayState.model_validate(data)
        except ValueError:
            return GatewayState()

    def update_gateway(self, gateway: str, **fields: Any) -> None:
        """Set some fields of the gateway's state (values stored as JSON)."""
        redis_key = self._keys.gateway_state(gateway)
        mapping: dict[FieldT, EncodableT] = {name: json.dumps(v) for name, v in fields.items()}
        with translate_errors(self._where, f"write {redis_key}"):
            self._client.hset(redis_key, mapping=mapping)

    def gateways_known(self) -> list[str]:
        """Gateways that have scan state (for `status`)."""
        with translate_errors(self._where, "list gateway states"):
            found = [
                str(k) for k in self._client.scan_iter(match=self._keys.gateway_states(), count=500)
            ]
        return sorted(self._keys.parse(k)[1] for k in found)

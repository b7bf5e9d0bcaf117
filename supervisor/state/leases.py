"""Leases on (gateway, session key) with fencing tokens, so one worker at a time acts on a session.

A lease is one Redis string, `"<token>:<owner>"` with a PX expiry. Acquiring takes the next
number from the global fence counter in the same Lua script that sets the lease, so tokens are
strictly increasing in acquisition order across all sessions and workers. A lease can expire
while its holder still runs (a GC pause, a stalled network, a redelivered Celery task), so a
holder must `ensure()` (or `check()`) right before every mutating step and pass its token along;
`extend()` and `ensure()` raise `LeaseLost` once the lease is gone or someone else's.

Compare-and-delete/pexpire compare the whole value, token and owner, so neither a new holder
that happens to reuse an owner name nor an old token after a fence reset can be mistaken for us.
Single-node Redis only: the acquire script touches two keys (lease, fence) that Redis Cluster
would put in different slots.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace

import redis

from supervisor.errors import LeaseLost, RedisUnavailable, StateError
from supervisor.state.connection import describe, translate_errors
from supervisor.state.keys import Keys
from supervisor.state.replication import ReplicaWait

#: KEYS[1] lease, KEYS[2] fence counter; ARGV[1] owner, ARGV[2] ttl ms.
#: Returns the new fencing token, or false (nil) when the lease is held by anyone.
#: The fence is only incremented on success, so contention does not burn tokens.
ACQUIRE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return token
"""

#: KEYS[1] lease; ARGV[1] expected value. Returns 1 when deleted, 0 when not ours (or gone).
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: KEYS[1] lease; ARGV[1] expected value, ARGV[2] new ttl ms. Returns 1 when extended, else 0.
EXTEND_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


@dataclass(frozen=True)
class Lease:
    """A lease we were granted. `deadline` is a local monotonic upper bound of its validity.

    The deadline is measured from before the request was sent, so it is never later than the
    server's expiry (clock drift aside): past it, assume the lease is gone without asking.
    """

    gateway: str
    key: str
    owner: str
    token: int
    ttl_ms: int
    redis_key: str
    deadline: float

    @property
    def value(self) -> str:
        return f"{self.token}:{self.owner}"

    def remaining_s(self, now: float | None = None) -> float:
        """Seconds left by the local deadline (0 when past it); `now` is time.monotonic()."""
        return max(0.0, self.deadline - (time.monotonic() if now is None else now))


@dataclass(frozen=True)
class Holder:
    """Who holds a lease now, as stored: for status output and tests."""

    token: int
    owner: str
    ttl_ms: int


def _check_ttl(ttl_ms: int) -> int:
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms <= 0:
        raise ValueError(f"a lease TTL is a positive whole number of ms, not {ttl_ms!r}")
    return ttl_ms


class Leases:
    """Acquire, check, extend and release leases; thread-safe (redis-py pools connections)."""

    def __init__(
        self, client: redis.Redis, keys: Keys, *, replicas: ReplicaWait | None = None
    ) -> None:
        self._client = client
        self._keys = keys
        self._where = describe(client)
        #: WAITs for replicas after the fence increment (None: never)
        self._replicas = replicas
        # register_script sends EVALSHA and loads the script again after a server restart
        self._acquire = client.register_script(ACQUIRE_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._extend = client.register_script(EXTEND_LUA)

    def acquire(self, gateway: str, key: str, owner: str, ttl_ms: int) -> Lease | None:
        """The lease with a fresh fencing token, or None when someone holds it.

        `owner` should be unique per attempt (worker, task id), not just per worker: a task that
        is redelivered must not pass for the copy that took the lease.
        """
        _check_ttl(ttl_ms)
        if not owner:
            raise ValueError("a lease owner is a non-empty string")
        redis_key = self._keys.lease(gateway, key)
        started = time.monotonic()
        with translate_errors(self._where, f"acquire lease {redis_key}"):
            needed, acked = 0, 0
            if self._replicas is None:
                token = self._acquire(keys=[redis_key, self._keys.fence], args=[owner, ttl_ms])
            else:
                # one pipeline, so WAIT runs on the connection that made the write
                with self._client.pipeline(transaction=False) as pipe:
                    self._acquire(
                        keys=[redis_key, self._keys.fence], args=[owner, ttl_ms], client=pipe
                    )
                    needed = self._replicas.queue(pipe)
                    token, *rest = pipe.execute()
                acked = rest[0] if rest else 0
        if token is None:
            return None
        if needed and self._replicas is not None:
            try:
                self._replicas.check(acked, needed, f"lease {redis_key} (fencing token {token})")
            except RedisUnavailable:
                # a lease a failover could forget is not held: give it back, act on nothing
                where = f"release lease {redis_key}"
                with contextlib.suppress(StateError), translate_errors(self._where, where):
                    self._release(keys=[redis_key], args=[f"{int(token)}:{owner}"])
                raise
        return Lease(
            gateway=gateway,
            key=key,
            owner=owner,
            token=int(token),
            ttl_ms=ttl_ms,
            redis_key=redis_key,
            deadline=started + ttl_ms / 1000,
        )

    def check(self, lease: Lease) -> bool:
        """Whether `lease` is still held by its owner with its token (an expired one is not)."""
        with translate_errors(self._where, f"check lease {lease.redis_key}"):
            value = self._client.get(lease.redis_key)
        return bool(value == lease.value)

    def ensure(self, lease: Lease) -> None:
        """Raise LeaseLost unless `lease` is still ours: call it right before acting."""
        if not self.check(lease):
            raise LeaseLost(lease.gateway, lease.key, lease.token)

    def extend(self, lease: Lease, ttl_ms: int) -> Lease:
        """Set the remaining TTL of our lease to `ttl_ms`; the same lease with a new deadline.

        Raises LeaseLost when the lease expired or is someone else's: a heartbeat that fails
        quietly would let a worker act on a session another one now owns.
        """
        _check_ttl(ttl_ms)
        started = time.monotonic()
        with translate_errors(self._where, f"extend lease {lease.redis_key}"):
            extended = self._extend(keys=[lease.redis_key], args=[lease.value, ttl_ms])
        if not extended:
            raise LeaseLost(lease.gateway, lease.key, lease.token)
        return replace(lease, ttl_ms=ttl_ms, deadline=started + ttl_ms / 1000)

    def release(self, lease: Lease) -> bool:
        """Delete the lease if it is still ours; False (and nothing deleted) otherwise.

        Not an error when lost: there is nothing left to undo, and the new holder's lease stays.
        """
        with translate_errors(self._where, f"release lease {lease.redis_key}"):
            deleted = self._release(keys=[lease.redis_key], args=[lease.value])
        return bool(deleted)

    def holder(self, gateway: str, key: str) -> Holder | None:
        """Who holds the lease on (gateway, key) now, if anyone."""
        redis_key = self._keys.lease(gateway, key)
        with (
            translate_errors(self._where, f"read lease {redis_key}"),
            self._client.pipeline(transaction=True) as pipe,
        ):
            pipe.get(redis_key)
            pipe.pttl(redis_key)
            value, ttl = pipe.execute()
        if value is None:
            return None
        token, _, owner = str(value).partition(":")
        return Holder(token=int(token), owner=owner, ttl_ms=int(ttl))

"""`StateStore`: one Redis client and the state kept in it.

Leases, attempt counters, episodes, the audit stream, paging incidents and silences: every
part shares the store's client and key builder, so one prefix covers everything.

Built from a URL (`SUPERVISOR_REDIS_URL` or the embedded server's). Before the engine acts it
checks two things: the server answers (`ping`), and it will keep what we write
(`check_durability`): leases, fencing tokens and attempt caps are only as safe as the server
holding them. A server without an fsynced append-only file forgets leases and resets the fence
on restart; an eviction policy may drop a lease or a counter under memory pressure (every one
of our keys but the fence has a TTL, so even `volatile-*` policies may pick them). With
replicas, fence increments and step claims WAIT for one (`supervisor.state.replication`).
"""

from __future__ import annotations

from types import TracebackType

import redis

from supervisor.errors import RedisUnavailable
from supervisor.state.attempts import DEFAULT_COUNTER_TTL_S, Attempts
from supervisor.state.audit import DEFAULT_MAXLEN, AuditLog
from supervisor.state.budgets import Budgets
from supervisor.state.connection import describe, make_client, translate_errors
from supervisor.state.episodes import Episodes
from supervisor.state.held import HeldMessages
from supervisor.state.incidents import Incidents
from supervisor.state.keys import DEFAULT_PREFIX, Keys
from supervisor.state.leases import Leases
from supervisor.state.replication import (
    DEFAULT_WAIT_REPLICAS,
    DEFAULT_WAIT_TIMEOUT_S,
    ReplicaWait,
)
from supervisor.state.silences import Silences


class StateStore:
    """The facade the engine, workers and CLI use; thread-safe like the redis-py client."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        audit_maxlen: int = DEFAULT_MAXLEN,
        audit_approximate: bool = True,
        counter_ttl_s: int = DEFAULT_COUNTER_TTL_S,
        wait_replicas: int = DEFAULT_WAIT_REPLICAS,
        wait_timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
    ) -> None:
        """Wrap an existing client; it must decode responses (see `from_url`).

        `wait_replicas`: replicas that must acknowledge each fence increment and step claim
        when the server has replicas (0: never WAIT); see `supervisor.state.replication`."""
        if not client.get_encoder().decode_responses:
            raise ValueError("StateStore needs a client built with decode_responses=True")
        self.client = client
        self.keys = Keys(prefix)
        self.url = describe(client)
        self.replicas = ReplicaWait(client, wanted=wait_replicas, timeout_s=wait_timeout_s)
        self.leases = Leases(client, self.keys, replicas=self.replicas)
        self.attempts = Attempts(client, self.keys, counter_ttl_s=counter_ttl_s)
        self.audit = AuditLog(client, self.keys, maxlen=audit_maxlen, approximate=audit_approximate)
        self.episodes = Episodes(client, self.keys, replicas=self.replicas)
        self.budgets = Budgets(client, self.keys)
        self.incidents = Incidents(client, self.keys)
        self.silences = Silences(client, self.keys)
        self.held = HeldMessages(client, self.keys)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout_s: float = 2.0,
        socket_timeout_s: float = 5.0,
        health_check_interval_s: int = 30,
        audit_maxlen: int = DEFAULT_MAXLEN,
        audit_approximate: bool = True,
        counter_ttl_s: int = DEFAULT_COUNTER_TTL_S,
        wait_replicas: int = DEFAULT_WAIT_REPLICAS,
        wait_timeout_s: float = DEFAULT_WAIT_TIMEOUT_S,
    ) -> StateStore:
        """A store on a new client: bounded connect/read waits, no automatic retries.

        Connects lazily: call `ping()` to find out whether the server is there.
        """
        client = make_client(
            url,
            connect_timeout_s=connect_timeout_s,
            socket_timeout_s=socket_timeout_s,
            health_check_interval_s=health_check_interval_s,
        )
        return cls(
            client,
            prefix=prefix,
            audit_maxlen=audit_maxlen,
            audit_approximate=audit_approximate,
            counter_ttl_s=counter_ttl_s,
            wait_replicas=wait_replicas,
            wait_timeout_s=wait_timeout_s,
        )

    def ping(self) -> None:
        """Raise RedisUnavailable (naming the URL, password masked) unless the server answers."""
        with translate_errors(self.url, "ping"):
            if not self.client.ping():
                raise RedisUnavailable(f"cannot reach Redis at {self.url}: PING went unanswered")

    def check_durability(self) -> list[str]:
        """What makes the server unsafe to act on; empty when it is safe.

        Safe means all of:

        * an append-only file (`appendonly yes`): RDB snapshots alone lose every write since
          the last one on a crash, and a fence that goes back hands out tokens again;
        * `appendfsync everysec` or `always`: with `no` the kernel decides when the file
          reaches the disk (commonly 30 s on Linux), so a power cut loses that much;
        * `maxmemory-policy noeviction`. Every key of ours but the fence has a TTL, so the
          `volatile-*` policies may evict leases and counters just as `allkeys-*` do; and a
          limit set later with CONFIG SET evicts at once, so the policy is checked even
          while `maxmemory` is 0.

        Read with CONFIG GET; where CONFIG is disabled (managed Redis), from INFO, which shows
        `aof_enabled` and the policy but not `appendfsync`: then fsync cannot be verified, and
        that is a problem too (the reason says so).
        """
        with translate_errors(self.url, "read its configuration"):
            config: dict[str, str]
            try:
                config = {}
                for name in ("appendonly", "appendfsync", "save", "maxmemory", "maxmemory-policy"):
                    config.update({str(k): str(v) for k, v in self.client.config_get(name).items()})
            except redis.ResponseError:
                config = self._config_from_info()
        problems: list[str] = []
        aof = str(config.get("appendonly", "")).lower() == "yes"
        save = str(config.get("save", "")).strip()
        if not aof:
            if save:
                problems.append(
                    f"only RDB snapshots (save {save!r}, appendonly no): a crash loses every "
                    "write since the last snapshot, fencing tokens repeat; set appendonly yes"
                )
            else:
                problems.append(
                    "persistence is off (appendonly no and no RDB save points): a restart loses "
                    "every lease, fencing token and attempt counter; set appendonly yes"
                )
        else:
            fsync = str(config.get("appendfsync", "")).lower()
            if fsync == "no":
                problems.append(
                    "appendfsync is no: the kernel flushes the append-only file when it likes "
                    "(often 30 s), so a crash of the host loses that much; set appendfsync "
                    "everysec"
                )
            elif fsync not in {"everysec", "always"}:
                problems.append(
                    "appendfsync cannot be read (CONFIG GET is disabled): an append-only file "
                    "without fsync may lose writes; allow CONFIG GET or use a server whose "
                    "settings can be verified"
                )
        policy = str(config.get("maxmemory-policy", "")).lower()
        maxmemory = int(config.get("maxmemory", "0") or 0)
        if policy != "noeviction":
            limit = f"maxmemory {maxmemory}" if maxmemory else "no maxmemory yet"
            problems.append(
                f"maxmemory-policy is {policy or 'unknown'} ({limit}): Redis may evict leases "
                "and counters (they all have TTLs, so volatile-* policies pick them too); set "
                "maxmemory-policy noeviction"
            )
        return problems

    def _config_from_info(self) -> dict[str, str]:
        persistence = self.client.info("persistence")
        memory = self.client.info("memory")
        return {
            "appendonly": "yes" if int(persistence.get("aof_enabled", 0)) else "no",
            # INFO shows neither save points nor appendfsync: both read as unknown
            "save": "",
            "appendfsync": "",
            "maxmemory": str(memory.get("maxmemory", 0)),
            "maxmemory-policy": str(memory.get("maxmemory_policy", "")),
        }

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

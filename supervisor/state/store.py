"""`StateStore`: one Redis client and the state kept in it (leases, attempts, audit).

Built from a URL (`SUPERVISOR_REDIS_URL` or the embedded server's). Before the engine acts it
checks two things: the server answers (`ping`), and it will keep what we write
(`check_durability`): leases, fencing tokens and attempt caps are only as safe as the server
holding them. A server without persistence forgets leases and resets the fence on restart; an
eviction policy may drop a lease or a counter under memory pressure (every one of our keys but
the fence has a TTL, so even `volatile-*` policies may pick them).
"""

from __future__ import annotations

from types import TracebackType

import redis

from supervisor.errors import RedisNotDurable, RedisUnavailable
from supervisor.state.attempts import DEFAULT_COUNTER_TTL_S, Attempts
from supervisor.state.audit import DEFAULT_MAXLEN, AuditLog
from supervisor.state.budgets import Budgets
from supervisor.state.connection import describe, make_client, translate_errors
from supervisor.state.episodes import Episodes
from supervisor.state.keys import DEFAULT_PREFIX, Keys
from supervisor.state.leases import Leases


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
    ) -> None:
        """Wrap an existing client; it must decode responses (see `from_url`)."""
        if not client.get_encoder().decode_responses:
            raise ValueError("StateStore needs a client built with decode_responses=True")
        self.client = client
        self.keys = Keys(prefix)
        self.url = describe(client)
        self.leases = Leases(client, self.keys)
        self.attempts = Attempts(client, self.keys, counter_ttl_s=counter_ttl_s)
        self.audit = AuditLog(client, self.keys, maxlen=audit_maxlen, approximate=audit_approximate)
        self.episodes = Episodes(client, self.keys)
        self.budgets = Budgets(client, self.keys)

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
        )

    def ping(self) -> None:
        """Raise RedisUnavailable (naming the URL, password masked) unless the server answers."""
        with translate_errors(self.url, "ping"):
            if not self.client.ping():
                raise RedisUnavailable(f"cannot reach Redis at {self.url}: PING went unanswered")

    def check_durability(self) -> list[str]:
        """What makes the server unsafe to act on; empty when it is safe.

        Safe means: persistence on (an append-only file, or RDB snapshots configured -- those
        lose the last minutes on a crash, so fencing tokens may repeat afterwards; `check()`
        stays correct because it compares token and owner), and nothing evicted
        (`maxmemory-policy noeviction`, or no `maxmemory` limit at all). Read with CONFIG GET;
        where CONFIG is disabled (managed Redis), from INFO, which cannot show RDB save points.
        """
        with translate_errors(self.url, "read its configuration"):
            config: dict[str, str]
            try:
                config = {}
                for name in ("appendonly", "save", "maxmemory", "maxmemory-policy"):
                    config.update({str(k): str(v) for k, v in self.client.config_get(name).items()})
            except redis.ResponseError:
                config = self._config_from_info()
        problems: list[str] = []
        aof = str(config.get("appendonly", "")).lower() == "yes"
        save = str(config.get("save", "")).strip()
        if not aof and not save:
            problems.append(
                "persistence is off (appendonly no and no RDB save points): a restart loses "
                "every lease, fencing token and attempt counter; set appendonly yes"
            )
        policy = str(config.get("maxmemory-policy", "")).lower()
        maxmemory = int(config.get("maxmemory", "0") or 0)
        if maxmemory > 0 and policy != "noeviction":
            problems.append(
                f"maxmemory-policy is {policy or 'unknown'} with maxmemory {maxmemory}: Redis may "
                "evict leases and counters under memory pressure; set maxmemory-policy noeviction"
            )
        return problems

    def _config_from_info(self) -> dict[str, str]:
        persistence = self.client.info("persistence")
        memory = self.client.info("memory")
        return {
            "appendonly": "yes" if int(persistence.get("aof_enabled", 0)) else "no",
            # INFO does not show save points; an RDB-only server reads as not persistent
            "save": "",
            "maxmemory": str(memory.get("maxmemory", 0)),
            "maxmemory-policy": str(memory.get("maxmemory_policy", "")),
        }

    def require_durable(self) -> None:
        """Raise RedisNotDurable listing the problems unless `check_durability` finds none."""
        problems = self.check_durability()
        if problems:
            raise RedisNotDurable(self.url, problems)

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

"""Every Redis key lane-supervisor uses, built here and nowhere else, from one prefix.

Layout (prefix "ls:" by default; `<x>` is a component escaped as below; "no TTL" keys are few
per gateway and live as long as the deployment):

    ls:fence                                  INCR counter: fencing tokens; no TTL (leases.py)
    ls:lease:<gateway>:<session key>          "<token>:<owner>"; PX = the lease TTL (leases.py)
    ls:attempts:<gateway>:<session key>:<sid> hash: count, next_not_before_ms, last_error,
                                              first_seen_ms, last_attempt_ms; EX = counter
                                              TTL, 7 days, renewed per attempt (attempts.py)
    ls:escalated:<gateway>:<session key>:<sid>
                                              JSON {ts_ms, reason}, SET NX; EX = counter TTL
    ls:audit                                  stream, XADD MAXLEN ~ 100000; no TTL (audit.py)
    ls:heals:<gateway>:<session key>          zset: recovery id -> reset time ms, within the
                                              session's heal window; PX = the window, at least
                                              an hour (budgets.py)
    ls:heals:<gateway>                        zset: the gateway's resets in the last hour; PX
                                              likewise
    ls:flapping:<gateway>:<session key>       "1", SET NX: escalated as flapping, hands off; PX
                                              = the heal window (budgets.py)
    ls:flapping:<gateway>                     "1", SET NX: the gateway spent its hourly heal
                                              budget (paged once); PX = 1 hour
    ls:active:<gateway>                       hash: session key -> JSON of its open episode
                                              (attempting or escalated); healthy sessions are
                                              never in it, so they cost no write; no TTL
                                              (episodes.py)
    ls:step:<recovery id>:<step>              "started|<owner>" then "done|<answer>", SET NX:
                                              one step of one attempt runs once however often
                                              Celery delivers it; EX = 24 h (episodes.py)
    ls:held:<recovery id>                     JSON list: the messages a reset of a held lane
                                              dropped (run id, sent at, text only with
                                              held_messages = "redeliver"); EX = 24 h and at
                                              least redeliver_max_age (held.py)
    ls:dropped:<gateway>                      zset: JSON {key, recovery_id, dropped,
                                              redelivered, since_ms} -> close time ms, one per
                                              recovery whose reset dropped held messages, the
                                              last 24 h (status); PX = 24 h (held.py)
    ls:step:<task id>:deliveries              INCR: how often one task was delivered; EX = 24 h
    ls:gw:<gateway>                           hash of JSON values: protocol, boot_marker,
                                              boot_seen_ms, last_scan_ms, last_error(_kind),
                                              failures, unreachable_open, breaker_open, counts;
                                              no TTL (episodes.py)
    ls:flag:<name>                            "1", SET NX: a fleet-wide condition already
                                              escalated ("redis_not_durable"); no TTL
    ls:incident:<dedup key>                   hash: one paging incident (open or resolving)
                                              and its per-provider delivery state; EX = 7 days
                                              open, 1 day resolving (incidents.py)
    ls:incidents:open                         zset: dedup key -> opened ms; no TTL, entries
                                              whose hash expired are dropped on read
    ls:incidents:resolving                    zset: dedup key -> resolved ms (resolve sends
                                              not yet delivered everywhere); no TTL, likewise
    ls:silence:<gateway>[:<session key>]      JSON of one silence; PX = its duration
                                              (silences.py)

Escaping: session keys contain ':' ("agent:main:telegram:group:-100"), so every variable
component is percent-encoded with `urllib.parse.quote(part, safe="")` before the parts are joined
with ':'. An encoded part never contains ':' (nor '*', '?', '[', '{', '}': glob patterns built
from it match literally and no Redis Cluster hash tag can appear by accident), so splitting a key
on ':' gives back exactly the parts it was built from: no two different (kind, gateway, key,
session id) tuples map to one Redis key. Percent-encoding was chosen over hashing to keep keys
readable in `redis-cli` ("agent%3Amain%3Amain") and over length prefixes to keep them greppable.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

DEFAULT_PREFIX = "ls:"


def escape(part: str) -> str:
    """One key component, percent-encoded so it contains no ':' and no glob character."""
    return quote(part, safe="")


def unescape(part: str) -> str:
    return unquote(part)


@dataclass(frozen=True)
class Keys:
    """Key builder for one deployment; tests give each case its own prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if len(self.prefix) < 2 or not self.prefix.endswith(":"):
            raise ValueError(f"a key prefix is a name followed by ':', not {self.prefix!r}")

    def _key(self, kind: str, *parts: str) -> str:
        return self.prefix + ":".join((kind, *(escape(p) for p in parts)))

    @property
    def fence(self) -> str:
        return self.prefix + "fence"

    @property
    def audit(self) -> str:
        return self.prefix + "audit"

    def lease(self, gateway: str, session_key: str) -> str:
        return self._key("lease", gateway, session_key)

    def attempts(self, gateway: str, session_key: str, session_id: str) -> str:
        return self._key("attempts", gateway, session_key, session_id)

    def escalated(self, gateway: str, session_key: str, session_id: str) -> str:
        return self._key("escalated", gateway, session_key, session_id)

    def heals(self, gateway: str, session_key: str | None = None) -> str:
        """Reset times of one session key (or, without a key, of the whole gateway)."""
        if session_key is None:
            return self._key("heals", gateway)
        return self._key("heals", gateway, session_key)

    def flapping(self, gateway: str, session_key: str | None = None) -> str:
        if session_key is None:
            return self._key("flapping", gateway)
        return self._key("flapping", gateway, session_key)

    def active(self, gateway: str) -> str:
        return self._key("active", gateway)

    def step_claim(self, recovery_id: str, step: str) -> str:
        return self._key("step", recovery_id, step)

    def dropped(self, gateway: str) -> str:
        return self._key("dropped", gateway)

    def held(self, recovery_id: str) -> str:
        return self._key("held", recovery_id)

    def gateway_state(self, gateway: str) -> str:
        return self._key("gw", gateway)

    def gateway_states(self) -> str:
        """A SCAN MATCH pattern for every gateway's scan state."""
        return escape_glob(self.prefix) + "gw:*"

    def flag(self, name: str) -> str:
        return self._key("flag", name)

    def all_keys(self) -> str:
        """A SCAN MATCH pattern for every key of this deployment (tests clean up with it)."""
        return escape_glob(self.prefix) + "*"

    def parse(self, key: str) -> tuple[str, ...]:
        """(kind, *parts) of a key built here: the inverse of the builders, used by tests."""
        if not key.startswith(self.prefix):
            raise ValueError(f"{key!r} does not start with {self.prefix!r}")
        kind, *parts = key[len(self.prefix) :].split(":")
        return (kind, *(unescape(p) for p in parts))

    def incident(self, dedup_key: str) -> str:
        return self._key("incident", dedup_key)

    @property
    def incidents_open(self) -> str:
        return self._key("incidents", "open")

    @property
    def incidents_resolving(self) -> str:
        return self._key("incidents", "resolving")

    def silence(self, gateway: str, session_key: str | None = None) -> str:
        """A gateway's silence, or one session's (gateway silences cover their sessions)."""
        if session_key is None:
            return self._key("silence", gateway)
        return self._key("silence", gateway, session_key)

    def silences(self) -> str:
        """A SCAN MATCH pattern for every silence."""
        return escape_glob(self.prefix) + "silence:*"


def escape_glob(text: str) -> str:
    """`text` as a literal inside a Redis glob pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)

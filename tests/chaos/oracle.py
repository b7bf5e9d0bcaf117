"""The counted oracle: what the simulated gateways saw, held against what the supervisor meant.

Nothing here asks the supervisor what it did. A `CountingGateway` records every mutating call
with the state of the session *before* the call (sessionId, zombie or not, a live run or not),
so a duplicate or a wrong action is a fact the gateway observed:

* duplicate mutation: within one episode (gateway, session key, sessionId before the call), the
  same mutating method sent more often than the ladder intended. The ladder intends at most one
  of each per attempt, and an attempt exists only where its intent ("sending") is in the audit,
  under one recovery id; so the count is, per episode and method, calls minus distinct recovery
  ids that announced that step, floored at zero (`strict` rows allow one per episode, full stop).
* wrong action: any abort/reset/send on a session that was not a zombie at that moment
  (idle, finished, or with a live or held run).
* lost audit record: a mutating call the gateway saw with no "sending" record before it.
* leaks: canary secrets found in logs, Redis keys and values, the AOF, audit, pages, errors.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from supervisor.simulator.gateway import MUTATING, SimGateway
from supervisor.state import AuditRecord, StateStore

#: which step announces which method ("sending" records name the step)
STEP_OF = {"sessions.abort": "abort", "sessions.reset": "reset", "sessions.send": "reset"}


@dataclass(frozen=True)
class Act:
    """One mutating call as the gateway received it."""

    gateway: str
    key: str
    method: str
    sid_before: str | None
    zombie_before: bool
    live_before: bool
    outcome: str
    at: float


class CountingGateway(SimGateway):
    """A simulated gateway that also records each mutating call with the state before it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acts: list[Act] = []
        self.lists: list[float] = []  # monotonic times of sessions.list calls (scans, rereads)
        #: rows listed with a startedAt that is not a number (unreadable)
        self.garbage_keys: set[str] = set()
        self._lock = threading.Lock()

    def row(self, s: Any) -> dict[str, Any]:
        row = super().row(s)
        if s.key in self.garbage_keys:
            row["startedAt"] = "yesterday"
        return row

    def handle(self, method: str, params: dict[str, Any], scopes: list[str]) -> Any:
        if method == "sessions.list":
            self.lists.append(time.monotonic())
        if method not in MUTATING:
            return super().handle(method, params, scopes)
        self.tick()
        key = params.get("key")
        s = self.sessions.get(key) if isinstance(key, str) else None
        before = (
            (
                s.session_id,
                s.status == "running" and not s.live_run and not s.held_runs,
                bool(s.live_run or s.held_runs),
            )
            if s is not None
            else (None, False, False)
        )
        n = len(self.mutations)
        try:
            return super().handle(method, params, scopes)
        finally:
            if len(self.mutations) > n:
                m = self.mutations[-1]
                with self._lock:
                    self.acts.append(
                        Act(
                            self.name,
                            m.key,
                            method,
                            before[0],
                            before[1],
                            before[2],
                            m.outcome,
                            time.monotonic(),
                        )
                    )

    # -- scenario helpers, run on the simulator's loop thread via server.call -------------------

    def start_live_run(self, key: str) -> None:
        """A new live run on the session now (the gateway's own recovery plus a new message)."""
        s = self.sessions[key]
        now = self.now_ms()
        run = self._run_id()
        s.status, s.started_at, s.updated_at, s.ended_at = "running", now, now, None
        s.live_run, s.last_run_id, s.finishes_at, s.held_runs = run, run, None, []
        s.aborted_last_run = False

    def drop(self, key: str) -> None:
        self.sessions.pop(key, None)
        self.garbage_keys.discard(key)

    def healthy(self, key: str) -> bool:
        s = self.sessions.get(key)
        return s is not None and s.status != "running"


@dataclass
class Counts:
    duplicates: int = 0
    wrong: int = 0
    lost_audit: int = 0
    details: list[str] = field(default_factory=list)

    def __iadd__(self, other: Counts) -> Counts:
        self.duplicates += other.duplicates
        self.wrong += other.wrong
        self.lost_audit += other.lost_audit
        self.details += other.details
        return self


def read_audit(store: StateStore) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    since: str | None = None
    while True:
        page = store.audit.read(5000, since)
        if not page:
            return out
        out += page
        since = page[-1].entry_id


def count(
    acts: Iterable[Act],
    audit: Iterable[AuditRecord],
    *,
    strict: bool = False,
    live_ok: frozenset[tuple[str, str]] = frozenset(),
) -> Counts:
    """Duplicates, wrong actions and lost intents among `acts` (see the module docstring).

    `live_ok` lists (gateway, key) whose abort of a live run is intended (live_overdue).
    """
    acts = list(acts)
    sending: Counter[tuple[str, str | None, str]] = Counter()
    attempts: dict[tuple[str, str | None, str], set[str | None]] = defaultdict(set)
    for r in audit:
        if r.outcome == "sending":
            sending[(r.gateway, r.key, r.step)] += 1
            attempts[(r.gateway, r.key, r.step)].add(r.recovery_id)
    out = Counts()
    per_episode: Counter[tuple[str, str, str | None, str]] = Counter()
    per_step: Counter[tuple[str, str, str]] = Counter()
    for a in acts:
        per_episode[(a.gateway, a.key, a.sid_before, a.method)] += 1
        per_step[(a.gateway, a.key, STEP_OF[a.method])] += 1
        if not a.zombie_before and not (a.live_before and (a.gateway, a.key) in live_ok):
            out.wrong += 1
            out.details.append(f"wrong action: {a.method} on {a.gateway}/{a.key} ({a.outcome})")
    for (gw, key, _sid, method), n in per_episode.items():
        allowed = 1 if strict else max(1, len(attempts[(gw, key, STEP_OF[method])]))
        if n > allowed:
            out.duplicates += n - allowed
            out.details.append(f"duplicate: {method} x{n} on {gw}/{key} (allowed {allowed})")
    for (gw, key, step), n in per_step.items():
        announced = sending[(gw, key, step)]
        if n > announced:
            out.lost_audit += n - announced
            out.details.append(f"lost audit: {step} x{n} on {gw}/{key}, {announced} announced")
    return out


def scan_text(blob: bytes | str, canaries: Iterable[str]) -> list[str]:
    data = blob.encode() if isinstance(blob, str) else blob
    return [c for c in canaries if c.encode() in data]


def redis_dump(store: StateStore) -> bytes:
    """Every key and value in the Redis server (broker queues, unacked, results, our state)."""
    client = store.client
    parts: list[str] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == "string":
            value: object = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = client.xrange(key, "-", "+")
        else:
            value = kind
        parts.append(f"{key} {value!r}")
    return "\n".join(parts).encode()


@dataclass
class Row:
    """One line of the table."""

    fault: str
    runs: int = 0
    survived: int = 0
    duplicates: int = 0
    wrong: int = 0
    lost_audit: int = 0
    leaks: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, counts: Counts) -> None:
        self.duplicates += counts.duplicates
        self.wrong += counts.wrong
        self.lost_audit += counts.lost_audit
        self.problems += counts.details

    @property
    def ok(self) -> bool:
        return (
            self.runs > 0
            and self.survived == self.runs
            and self.duplicates == 0
            and self.wrong == 0
            and self.lost_audit == 0
            and self.leaks == 0
        )


HEADER = (
    "| fault | runs | survived | duplicate mutations | wrong actions | lost audit records "
    "| leaks | notes |"
)


def table(rows: Iterable[Row]) -> str:
    lines = [HEADER, "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(
            f"| {r.fault} | {r.runs} | {r.survived} | {r.duplicates} | {r.wrong} | "
            f"{r.lost_audit} | {r.leaks} | {'; '.join(r.notes)} ({r.seconds:.0f} s) |"
        )
    return "\n".join(lines)

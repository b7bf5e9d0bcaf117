"""What the scenarios share: runs of stuck sessions, waiting for them, tallying a row."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass

from supervisor.simulator.server import SimulatorServer
from supervisor.state import AuditRecord, StateStore
from tests.chaos.oracle import CountingGateway, Row, count

_ids = itertools.count(1)


def new_key(prefix: str = "r") -> str:
    return f"agent:main:{prefix}{next(_ids):06d}"


@dataclass
class Stuck:
    """One stuck session of one run, and when it was made and settled."""

    gw: CountingGateway
    key: str
    since: float
    done_at: float | None = None
    escalated: bool = False

    @property
    def name(self) -> str:
        return self.gw.name

    @property
    def took(self) -> float | None:
        return None if self.done_at is None else self.done_at - self.since


def add_zombie(sim: SimulatorServer, gw: CountingGateway, prefix: str = "r") -> Stuck:
    key = new_key(prefix)
    sim.call(gw.add_zombie, key)
    return Stuck(gw, key, time.monotonic())


def is_escalated(store: StateStore, s: Stuck) -> bool:
    sid = s.gw.sessions[s.key].session_id
    try:
        return store.attempts.is_escalated(s.name, s.key, sid)
    except Exception:
        return False  # Redis restarting: ask again


def settle(store: StateStore, stuck: Iterable[Stuck], timeout: float, every: float = 0.1) -> None:
    """Wait until each stuck session is healed or escalated (or `timeout` passes)."""
    todo = list(stuck)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = [s for s in todo if s.done_at is None]
        if not pending:
            return
        for s in pending:
            if s.gw.healthy(s.key):
                s.done_at = time.monotonic()
            elif is_escalated(store, s):
                s.done_at, s.escalated = time.monotonic(), True
        time.sleep(every)


def tally(
    row: Row,
    gws: Iterable[CountingGateway],
    audit: list[AuditRecord],
    keys: Iterable[tuple[str, str]] | None = None,
    *,
    strict: bool = False,
) -> None:
    """Add the oracle's counts for these sessions (all when `keys` is None) to `row`."""
    wanted = None if keys is None else set(keys)
    acts = [a for gw in gws for a in gw.acts if wanted is None or (a.gateway, a.key) in wanted]
    records = [r for r in audit if wanted is None or (r.gateway, r.key or "") in wanted]
    row.add(count(acts, records, strict=strict))


def recovered_note(stuck: list[Stuck], limit: float | None = None) -> str:
    times = [s.took for s in stuck if s.took is not None]
    if not times:
        return "none recovered"
    text = f"slowest recovery {max(times):.1f} s"
    if limit is not None:
        text += f" (limit {limit:.0f} s)"
    escalated = sum(1 for s in stuck if s.escalated)
    if escalated:
        text += f", {escalated} escalated"
    return text

"""Both sizes of the suite: which fault runs how often, in table order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from supervisor.settings import Settings
from tests.chaos import adversarial, edges, fuzz, hosts, inline, real, static
from tests.chaos.harness import chaos_environ
from tests.chaos.oracle import Row


@dataclass(frozen=True)
class Fault:
    """One table section: `run(root, n)` returns its row(s)."""

    id: str
    run: Callable[[Path, int], Row | list[Row]]
    bounded: int
    full: int
    #: long and mostly idle: the full run runs it alongside the others
    background: bool = False


FAULTS: list[Fault] = [
    Fault("1", lambda r, n: real.child_kills(r, n), 6, 240),
    Fault("2", lambda r, n: real.worker_kills(r, n), 2, 50),
    Fault("3", lambda r, n: inline.live_race(r, n), 10, 500),
    Fault("4a", lambda r, n: inline.concurrent_steps(r, n), 10, 1000),
    Fault("4b", lambda r, n: real.celery_duplicates(r, n), 2, 50),
    Fault("5", lambda r, n: real.two_beats(r, n), 20, 1800, background=True),
    Fault("6", lambda r, n: real.beat_stop(r, n), 1, 10),
    Fault("7", lambda r, n: real.redis_restarts(r, n), 2, 50),
    Fault("8a", lambda r, n: inline.not_durable(r, n), 5, 20),
    Fault(
        "8b",
        lambda r, n: [real.not_durable_real(r / v, v) for v in inline.UNSAFE_REDIS[:n]],
        1,
        5,
    ),
    Fault("9", lambda r, n: inline.lease_expiry(r, n), 4, 100),
    Fault("10", lambda r, n: inline.connection_reset(r, n), 8, 100),
    Fault("11", lambda r, n: real.crash_loop(r, n), 1, 10),
    Fault("12", lambda r, n: real.one_page(r, n), 8, 100),
    Fault("13a", lambda r, n: inline.bad_gateways(r, n), 17, 170),
    Fault("13b", lambda r, n: fuzz.fuzz(n), 200, 10_000),
    Fault("14", lambda r, n: inline.clock_skew(r, n), 8, 200),
    Fault("15", lambda r, n: real.secrets(r), 1, 1),
    Fault("16", lambda r, n: static.static_invariants(), 1, 1),
    Fault("17", lambda r, n: adversarial.act_window_messages(r, n), 16, 500),
    Fault("18", lambda r, n: adversarial.paused_holders(r, n), 4, 100),
    Fault("19", lambda r, n: adversarial.redis_paused(r, n), 4, 100),
    Fault("20", lambda r, n: adversarial.flapping(r, n), 5, 20),
    Fault("21", lambda r, n: adversarial.shifting_pages(r, n), 3, 100),
    Fault("22", lambda r, n: edges.hostile_secrets(r, n), 3, len(edges.KINDS)),
    Fault("23", lambda r, n: edges.redirects(r, n), 5, 100),
    Fault("24", lambda r, n: edges.hostile_clocks(r, n), 56, 560),
    Fault("25", lambda r, n: edges.oversized_listings(r, n), 1, 10),
    # the act pool `up` and compose run by default (prefork); `two_hosts(..., "threads")` too
    Fault("26", lambda r, n: hosts.two_hosts(r, n, Settings().act_pool), 4, 24),
]
BY_ID = {f.id: f for f in FAULTS}


def run_fault(fault: Fault, root: Path, size: str) -> list[Row]:
    n = fault.full if size == "full" else fault.bounded
    started = time.monotonic()
    try:
        with chaos_environ():
            out = fault.run(root / f"fault-{fault.id}", n)
    except Exception as exc:  # a scenario that breaks is a failed row, not a lost table
        row = Row(f"{fault.id}. (scenario failed)")
        row.problems.append(f"{type(exc).__name__}: {exc}")
        row.notes.append(f"scenario raised {type(exc).__name__}")
        row.seconds = time.monotonic() - started
        return [row]
    return out if isinstance(out, list) else [out]


def run(
    size: str,
    root: Path,
    only: set[str] | None = None,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Every fault of `size` ("bounded" or "full"), rows in table order."""
    chosen = [f for f in FAULTS if only is None or f.id in only]
    results: dict[str, list[Row]] = {}
    background: list[threading.Thread] = []
    for fault in chosen:
        if fault.background and size == "full" and len(chosen) > 1:

            def go(f: Fault = fault) -> None:
                results[f.id] = run_fault(f, root, size)

            thread = threading.Thread(target=go, name=f"fault-{fault.id}", daemon=True)
            thread.start()
            background.append(thread)
    for fault in chosen:
        if fault.id in results or any(t.name == f"fault-{fault.id}" for t in background):
            continue
        results[fault.id] = run_fault(fault, root, size)
        for row in results[fault.id]:
            if on_row is not None:
                on_row(row)
    for thread in background:
        thread.join()
        for row in results[thread.name.removeprefix("fault-")]:
            if on_row is not None:
                on_row(row)
    return [row for f in chosen for row in results.get(f.id, [])]

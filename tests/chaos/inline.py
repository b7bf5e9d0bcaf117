"""Faults injected around the engine run inline (Scanner + Steps, as `heal` and each worker child
run them) against a real valkey, the threaded simulator and the TCP proxy: races that need
precise timing (a live run appearing between detection and action, concurrent deliveries of one
step, a lease expiring during a slow call, a connection reset after a request was sent)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from supervisor.core.ladder import Step
from supervisor.errors import SupervisorError
from supervisor.recovery.context import REDIS_DEDUP_KEY, Engine
from supervisor.recovery.models import NextStep, StepResult
from supervisor.recovery.runtime import run_ladder
from supervisor.recovery.scanner import Scanner
from supervisor.recovery.steps import Steps
from supervisor.simulator import SESSION_FAULTS, FaultMode
from tests.chaos.common import new_key, tally
from tests.chaos.harness import Cluster
from tests.chaos.oracle import CountingGateway, Row
from tests.chaos.proxy import Proxy


def _finish(
    row: Row,
    c: Cluster,
    gws: list[CountingGateway],
    started: float,
    *,
    strict: bool = False,
    extra: bytes = b"",
) -> Row:
    tally(row, gws, c.audit(), None, strict=strict)
    hits = c.leak_hits(extra=extra)
    row.leaks = len(hits)
    row.problems += hits
    row.seconds = time.monotonic() - started
    return row


def start_attempt(engine: Engine, gw: CountingGateway, key: str) -> NextStep | None:
    out = Scanner(engine).scan(gw.name, only_key=key)
    return next((n for n in out.starts if n.ref.key == key), None)


def run_attempt(
    engine: Engine, first: NextStep, before: Callable[[NextStep], None] | None = None
) -> list[StepResult]:
    """Run an attempt's steps to their end, inline; `before(step)` runs before each one."""
    steps = Steps(engine)
    queue = [first]
    results = []
    while queue:
        nxt = queue.pop(0)
        if before is not None:
            before(nxt)
        result = steps.run(nxt.step, nxt.ref)
        results.append(result)
        if result.next is not None:
            queue.append(result.next)
    return results


# -- 3. a live run appears between detection and action -----------------------------------------


def live_race(root: Path, runs: int) -> Row:
    """Each run: a scan detects a zombie and starts an attempt; then the session gets a live run
    (before the abort, or between abort and reset); the step that follows must not touch it."""
    started = time.monotonic()
    row = Row("3. live run appears between detection and action")
    with Cluster(root) as c:
        gws = [c.gateway("v4", "2026.9.6"), c.gateway("v3", "2026.3.24")]
        c.write_fleet()
        engine = c.engine()
        phases = {Step.ABORT: 0, Step.RESET: 0}
        for i in range(runs):
            gw, key = gws[i % 2], new_key("live")
            c.sim.call(gw.add_zombie, key)
            first = start_attempt(engine, gw, key)
            if first is None:
                row.problems.append(f"run {i}: no attempt started")
                row.runs += 1
                continue
            when = Step.ABORT if i % 4 < 2 else Step.RESET
            phases[when] += 1

            def before(
                nxt: NextStep, gw: CountingGateway = gw, key: str = key, when: Step = when
            ) -> None:
                if nxt.step is when and gw.sessions[key].live_run is None:
                    c.sim.call(gw.start_live_run, key)

            results = run_attempt(engine, first, before)
            live = gw.sessions[key].live_run is not None
            touched = [a for a in gw.acts if a.key == key and a.live_before]
            row.runs += 1
            if live and not touched:
                row.survived += 1
            else:
                row.problems.append(
                    f"run {i}: live {live}, acted on it {len(touched)}: "
                    + ", ".join(f"{r.step}={r.outcome}" for r in results)
                )
            c.sim.call(gw.drop, key)
        row.notes.append(
            f"live run before abort {phases[Step.ABORT]}, between abort and reset "
            f"{phases[Step.RESET]}"
        )
        return _finish(row, c, gws, started)


# -- 4a. the same step run 2-10 times at once ---------------------------------------------------


def concurrent_steps(root: Path, runs: int, parallel: int = 6) -> Row:
    """Each run: one attempt whose every step is run by 2-10 threads at once, each with its own
    engine (a worker each), sharing the ref as redelivered copies of one task do."""
    started = time.monotonic()
    row = Row("4a. same step run 2-10 times at once (threads)")
    rng = random.Random(41)
    with Cluster(root) as c:
        gws = [c.gateway("v4", "2026.9.6"), c.gateway("v3", "2026.3.24")]
        c.write_fleet()
        engines = [c.engine() for _ in range(10)]
        copies_total = 0
        done = 0
        while done < runs:
            batch = []
            for j in range(min(parallel, runs - done)):
                gw, key = gws[(done + j) % 2], new_key("dup")
                c.sim.call(gw.add_zombie, key)
                first = start_attempt(engines[0], gw, key)
                batch.append((gw, key, first, rng.randint(2, 10)))
            done += len(batch)
            current = {key: first for _gw, key, first, _n in batch}
            while any(current.values()):
                results: dict[str, list[StepResult]] = {key: [] for key in current}
                threads = []
                for _gw, key, _first, n in batch:
                    nxt = current[key]
                    if nxt is None:
                        continue
                    copies_total += n
                    barrier = threading.Barrier(n)
                    for e in engines[:n]:

                        def copy(
                            e: Engine = e,
                            nxt: NextStep = nxt,
                            key: str = key,
                            barrier: threading.Barrier = barrier,
                            out: dict[str, list[StepResult]] = results,
                        ) -> None:
                            barrier.wait()
                            out[key].append(Steps(e).run(nxt.step, nxt.ref))

                        threads.append(threading.Thread(target=copy))
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(60)
                for key in current:
                    nexts = [r.next for r in results[key] if r.next is not None]
                    current[key] = nexts[0] if nexts else None
            for gw, key, _first, _n in batch:
                aborts = sum(1 for a in gw.acts if a.key == key and a.method == "sessions.abort")
                resets = sum(1 for a in gw.acts if a.key == key and a.method == "sessions.reset")
                row.runs += 1
                if aborts == 1 and resets == 1 and gw.healthy(key):
                    row.survived += 1
                else:
                    row.problems.append(f"{gw.name}/{key}: {aborts} aborts, {resets} resets")
                c.sim.call(gw.drop, key)
        row.notes.append(f"{copies_total} step copies run")
        return _finish(row, c, gws, started, strict=True)


# -- 8a. a Redis that would lose or evict state: refuse, escalate once, resolve once fixed -------


#: unsafe server settings the durability check must refuse: (appendonly, extra server
#: arguments, the CONFIG SET that fixes it)
UNSAFE_VARIANTS: dict[str, tuple[bool, tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "no-persistence": (False, (), (("appendonly", "yes"),)),
    "rdb-only": (False, ("--save", "3600 1"), (("appendonly", "yes"),)),
    "fsync-no": (True, ("--appendfsync", "no"), (("appendfsync", "everysec"),)),
    "evicting": (
        True,
        ("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"),
        (("maxmemory-policy", "noeviction"),),
    ),
    "volatile": (
        True,
        ("--maxmemory-policy", "volatile-ttl"),
        (("maxmemory-policy", "noeviction"),),
    ),
}
UNSAFE_REDIS = tuple(UNSAFE_VARIANTS)


def not_durable(root: Path, runs: int, engines: int = 3, scans: int = 4) -> Row:
    """Each run: a fresh valkey with one unsafe setting (no persistence, RDB snapshots only,
    AOF with appendfsync no, allkeys-lru, volatile-ttl); several engines scan a zombie
    repeatedly (all refuse, one escalation); then the server is fixed (CONFIG SET) and a new
    engine resolves the incident once and heals the zombie."""
    started = time.monotonic()
    row = Row("8a. Redis unsafe settings: no persistence, RDB only, fsync no, evicting (inline)")
    resolved = healed = 0
    seen: Counter[str] = Counter()
    for i in range(runs):
        variant = UNSAFE_REDIS[i % len(UNSAFE_REDIS)]
        seen[variant] += 1
        appendonly, args, fixes = UNSAFE_VARIANTS[variant]
        with Cluster(root / f"run-{i}", appendonly=appendonly, redis_args=args) as c:
            gws = [c.gateway("v4", "2026.9.6"), c.gateway("v3", "2026.3.24")]
            keys = [new_key("nd") for _ in gws]
            for gw, key in zip(gws, keys, strict=True):
                c.sim.call(gw.add_zombie, key)
            c.write_fleet()
            workers = [c.engine() for _ in range(engines)]

            def scan_all(e: Engine, gws: list[CountingGateway] = gws) -> None:
                for _ in range(scans):
                    for gw in gws:
                        run_ladder(e, gw.name)

            threads = [threading.Thread(target=scan_all, args=(e,)) for e in workers]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert c.pages is not None
            time.sleep(0.3)
            pages = c.pages.triggers()
            audit = c.audit()
            refused = sum(1 for r in audit if r.outcome == "refused")
            escalations = sum(1 for r in audit if r.outcome == "redis_not_durable")
            acted = sum(len(gw.acts) for gw in gws)
            # the operator fixes the server; a new engine (a minute later) sees it durable
            for name, value in fixes:
                c.store.client.config_set(name, value)
            fixed = c.engine()
            for gw in gws:
                run_ladder(fixed, gw.name)
            resolves = sum(
                1
                for r in c.pages.recorder.to("/v2/enqueue")
                if r.json().get("event_action") == "resolve"
                and r.json().get("dedup_key") == REDIS_DEDUP_KEY
            )
            now_healed = all(gw.healthy(k) for gw, k in zip(gws, keys, strict=True))
            ok = (
                pages == {REDIS_DEDUP_KEY: 1}
                and escalations == 1
                and refused == engines * scans * len(gws)
                and acted == 0
                and resolves == 1
                and now_healed
            )
            resolved += resolves == 1
            healed += now_healed
            row.runs += 1
            row.survived += ok
            row.wrong += acted
            if not ok:
                row.problems.append(
                    f"run {i} ({variant}): pages {pages}, escalations {escalations}, refused "
                    f"{refused}, acted {acted}, resolves {resolves}, healed {now_healed}"
                )
            keep = {(gw.name, k) for gw, k in zip(gws, keys, strict=True)}
            tally(row, gws, c.audit(), keep)
            hits = c.leak_hits()
            row.leaks += len(hits)
            row.problems += hits
    row.notes.append(
        f"{engines} engines x {scans} scans refused each run "
        f"({', '.join(f'{v} {n}' for v, n in seen.items())}); 1 page per run; "
        f"resolved once fixed {resolved}/{runs}, then healed {healed}/{runs}"
    )
    row.seconds = time.monotonic() - started
    return row


# -- 9. the lease expires during a slow gateway call ---------------------------------------------


def lease_expiry(root: Path, runs: int, parallel: int = 8, ttl_s: float = 1.0) -> Row:
    """Each run: worker A takes the lease (TTL 1 s) and runs its abort through the proxy, whose
    every answer now takes longer than the TTL; meanwhile the lease expires and (in half the
    runs) worker B, talking to the gateway directly, takes a new one. A must never act: the
    proxy sees no mutating request from it; B's attempt heals the session once."""
    started = time.monotonic()
    row = Row("9. lease expires during a slow gateway call")
    with Cluster(root) as c, Proxy("127.0.0.1", 0).running() as proxy:
        proxy.target = ("127.0.0.1", c.sim.port)
        gws = [c.gateway("v4", "2026.9.6"), c.gateway("v3", "2026.3.24")]
        direct = c.write_fleet()
        slow = c.write_fleet(
            c.root / "slow" / "fleet.toml",
            proxy_port=proxy.port,
            call_timeout="20s",
            connect_timeout="20s",
        )
        a_engine = c.engine(slow, lease_ttl_s=ttl_s)
        b_engine = c.engine(direct)
        outcomes: dict[str, int] = {}
        done = 0
        while done < runs:
            batch = []
            proxy.delay_s = 0.0
            for j in range(min(parallel, runs - done)):
                gw, key = gws[(done + j) % 2], new_key("lease")
                c.sim.call(gw.add_zombie, key)
                first = start_attempt(a_engine, gw, key)
                batch.append((gw, key, first, (done + j) % 4 < 2))
            done += len(batch)
            mutating_before = _mutating(proxy)
            proxy.delay_s = ttl_s * 1.5
            a_results: dict[str, StepResult] = {}

            def worker_a(first: NextStep, key: str, out: dict[str, StepResult] = a_results) -> None:
                out[key] = Steps(a_engine).run(first.step, first.ref)

            threads = [
                threading.Thread(target=worker_a, args=(first, key))
                for _gw, key, first, _b in batch
                if first is not None
            ]
            for t in threads:
                t.start()
            time.sleep(ttl_s * 1.3)  # A's leases are gone; A still waits for its answers
            b_firsts = {
                key: start_attempt(b_engine, gw, key) for gw, key, _f, with_b in batch if with_b
            }
            for t in threads:
                t.join(120)
            proxy.delay_s = 0.0
            a_mutations = _mutating(proxy) - mutating_before
            for gw, key, first, with_b in batch:
                result = a_results.get(key)
                outcome = result.outcome if result else "no attempt"
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                b_first = b_firsts.get(key)
                if b_first is not None:
                    run_attempt(b_engine, b_first)
                else:  # nobody took over: the next scan does
                    nxt = start_attempt(b_engine, gw, key)
                    if nxt is not None:
                        run_attempt(b_engine, nxt)
                aborts = sum(1 for a in gw.acts if a.key == key and a.method == "sessions.abort")
                ok = (
                    first is not None
                    and outcome == "lease_lost"
                    and gw.healthy(key)
                    and aborts == 1
                    and (not with_b or b_first is not None)
                )
                row.runs += 1
                row.survived += ok and a_mutations == 0
                if not ok:
                    row.problems.append(f"{gw.name}/{key}: A {outcome}, aborts {aborts}")
                c.sim.call(gw.drop, key)
            if a_mutations:
                row.problems.append(f"the proxy forwarded {a_mutations} mutating request(s) of A")
                row.wrong += a_mutations
        row.notes.append(
            f"proxy delay {ttl_s * 1.5:g} s > lease TTL {ttl_s:g} s; A's outcomes {outcomes}; "
            "mutating requests from A: 0"
            if not any("forwarded" in p for p in row.problems)
            else "A sent mutating requests"
        )
        return _finish(row, c, gws, started)


def _mutating(proxy: Proxy) -> int:
    return sum(
        proxy.methods.get(m, 0) for m in ("sessions.abort", "sessions.reset", "sessions.send")
    )


# -- 10. the connection is reset after a mutating request was sent --------------------------------


def connection_reset(root: Path, runs: int) -> Row:
    """Each run: the proxy resets the connection right after forwarding the attempt's abort or
    reset to the gateway. The step must fail without sending it again; the next scan reads the
    session and settles the outcome (healed, or a new attempt)."""
    started = time.monotonic()
    row = Row("10. connection reset after a mutating request was sent")
    with Cluster(root) as c, Proxy("127.0.0.1", 0).running() as proxy:
        proxy.target = ("127.0.0.1", c.sim.port)
        gws = [c.gateway("v4", "2026.9.6"), c.gateway("v3", "2026.3.24")]
        fleet = c.write_fleet(proxy_port=proxy.port)
        engine = c.engine(fleet)
        settled: dict[str, int] = {}
        for i in range(runs):
            gw, key = gws[i % 2], new_key("rst")
            method = "sessions.abort" if i % 4 < 2 else "sessions.reset"
            c.sim.call(gw.add_zombie, key)
            first = start_attempt(engine, gw, key)
            sent_before = proxy.methods.get(method, 0)
            proxy.reset_after, proxy.reset_limit = {method}, proxy.resets + 1
            results = run_attempt(engine, first) if first is not None else []
            proxy.clear()
            sent = proxy.methods.get(method, 0) - sent_before
            failed = [r for r in results if r.outcome == "gateway_error"]
            # the next scans settle it from a fresh read
            later = run_ladder(engine, gw.name, only_key=key)
            if not gw.healthy(key):
                later += run_ladder(engine, gw.name, only_key=key)
            how = ",".join(f"{a.step}:{a.outcome}" for a in later if a.key == key) or "nothing"
            settled[how] = settled.get(how, 0) + 1
            n = sum(1 for a in gw.acts if a.key == key and a.method == method)
            expected = 1 if method == "sessions.reset" else 2  # a new attempt aborts again
            ok = sent == 1 and len(failed) == 1 and gw.healthy(key) and n == expected
            row.runs += 1
            row.survived += ok
            if not ok:
                row.problems.append(
                    f"run {i} {method}: sent {sent} before the reset, failed {len(failed)}, "
                    f"healthy {gw.healthy(key)}, {n} in all ("
                    + ", ".join(f"{r.step}={r.outcome}" for r in results)
                    + f"; then {how})"
                )
            c.sim.call(gw.drop, key)
        row.notes.append(f"{proxy.resets} resets; settled by the next read as {settled}")
        return _finish(row, c, gws, started)


# -- 13a. gateways that hang, send garbage, oversized or invalid frames; rows that change ---------


CHANGES: dict[str, Callable[[CountingGateway, str], None]] = {
    "sessionId changed": lambda gw, k: setattr(gw.sessions[k], "session_id", str(uuid.uuid4())),
    "row gone": lambda gw, k: gw.drop(k),
    "run finished": lambda gw, k: gw._finish(gw.sessions[k], "done"),
    "startedAt moved": lambda gw, k: setattr(
        gw.sessions[k], "started_at", (gw.sessions[k].started_at or 0) - 60_000
    ),
    "row unreadable": lambda gw, k: gw.garbage_keys.add(k),
}
# connection-level faults only: a session's state (a reset that changes nothing, a stuck claim)
# is the ladder's business
FAULTS = [m for m in FaultMode if m is not FaultMode.NONE and m not in SESSION_FAULTS]


def bad_gateways(root: Path, runs: int) -> Row:
    """Each run: a zombie on a gateway that hangs, drops, closes during connect, answers garbage
    or oversized frames (FaultMode), either from the scan on or only after detection; or whose
    row changes between detection and action. No crash (only SupervisorError subclasses, as
    gateway errors in the report or step), no action on the session."""
    started = time.monotonic()
    row = Row("13a. hanging/garbage/oversized gateways, rows changing")
    cases = [("fault", m, when) for m in FAULTS for when in ("scan", "step")]
    cases += [("change", name, "step") for name in CHANGES]
    seen: dict[str, int] = {}
    with Cluster(root, call_timeout="0.5s") as c:
        gws = [c.gateway("v4", "2026.9.6"), c.gateway("v3", "2026.3.24")]
        c.write_fleet(connect_timeout="0.5s", defaults="max_frame_bytes = 1048576")
        engine = c.engine()
        for i in range(runs):
            kind, what, when = cases[i % len(cases)]
            gw, key = gws[(i // len(cases)) % 2], new_key("bad")
            c.sim.call(gw.add_zombie, key)
            outcome = "?"
            crash = None
            try:
                if kind == "fault" and when == "scan":
                    gw.fault = what  # type: ignore[assignment]
                    out = Scanner(engine).scan(gw.name, only_key=key)
                    outcome = out.report.error_kind or "no error"
                    first = None
                else:
                    first = start_attempt(engine, gw, key)
                    if kind == "fault":
                        gw.fault = what  # type: ignore[assignment]
                    else:
                        c.sim.call(CHANGES[str(what)], gw, key)
                    if first is not None:
                        results = run_attempt(engine, first)
                        outcome = ",".join(f"{r.step}={r.outcome}" for r in results)
            except SupervisorError as exc:
                outcome = type(exc).__name__
            except Exception as exc:  # a crash: counted, never hidden
                crash = exc
            finally:
                gw.fault = FaultMode.NONE
            touched = [a for a in gw.acts if a.key == key]
            label = f"{what}@{when}"
            seen[label] = seen.get(label, 0) + 1
            ok = crash is None and not touched
            row.runs += 1
            row.survived += ok
            row.wrong += len(touched)
            if not ok:
                row.problems.append(
                    f"{label} on {gw.name}: {outcome}, crash {crash!r}, {len(touched)} action(s)"
                )
            c.sim.call(gw.drop, key)
            if kind == "fault":  # the episode it left open is closed by the next scan
                Scanner(engine).scan(gw.name)
        row.notes.append(f"{len(FAULTS)} fault modes at scan and at step, {len(CHANGES)} changes")
        return _finish(row, c, gws, started)


# -- 14. clock skew between worker and gateway ----------------------------------------------------


def clock_skew(root: Path, runs: int) -> Row:
    """Each run: gateways whose clocks run 5 minutes ahead of or behind ours (both versions),
    holding young and older live runs, finished and fresh sessions and one real zombie; with
    stale_after 2 minutes a skew misread would call live runs zombies. Only the zombie is
    acted on."""
    started = time.monotonic()
    row = Row("14. clock skew +-5 min between worker and gateway")
    false_zombies = 0
    with Cluster(root) as c:
        gws = [
            c.gateway(f"{v.replace('.', '-')}-{sign}", v, clock_skew_s=skew)
            for v in ("2026.9.6", "2026.3.24")
            for sign, skew in (("ahead", 300.0), ("behind", -300.0))
        ]
        c.write_fleet(defaults='stale_after = "2m"\nlane_timeout = "2h"')
        engine = c.engine()
        for i in range(runs):
            gw = gws[i % len(gws)]
            keys = {name: new_key(name) for name in ("young", "older", "done", "fresh", "zombie")}
            c.sim.call(lambda g=gw, k=keys["young"]: g.add_live(k, age_s=5))
            c.sim.call(lambda g=gw, k=keys["older"]: g.add_live(k, age_s=240))
            c.sim.call(lambda g=gw, k=keys["done"]: g.add_idle(k, age_s=30))
            c.sim.call(lambda g=gw, k=keys["fresh"]: g.add_idle(k, status=None))
            c.sim.call(lambda g=gw, k=keys["zombie"]: g.add_zombie(k, age_s=900))
            actions = run_ladder(engine, gw.name)
            zombie_verdicts = {
                a.key for a in actions if a.step == "abort" and a.key is not None
            }  # acted-on sessions
            false = zombie_verdicts - {keys["zombie"]}
            false_zombies += len(false)
            healed = gw.healthy(keys["zombie"])
            others = [a for a in gw.acts if a.key in set(keys.values()) - {keys["zombie"]}]
            ok = not false and healed and not others
            row.runs += 1
            row.survived += ok
            if not ok:
                row.problems.append(f"{gw.name}: false zombies {false}, healed {healed}")
            for k in keys.values():
                c.sim.call(gw.drop, k)
            Scanner(engine).scan(gw.name)
        row.notes.append(f"{false_zombies} false zombies; gateways at +300 s and -300 s")
        return _finish(row, c, gws, started)

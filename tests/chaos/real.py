"""Faults on real processes: celery workers and beats started with subprocess, a real valkey.

Workers are SIGKILLed at the named failpoints (SUPERVISOR_FAILPOINT, once per session through
SUPERVISOR_FAILPOINT_ONCE=<dir>/{tag}) or from outside (the whole process group), beats are
SIGSTOPped, Redis is SIGKILLed and restarted on its append-only file.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
from celery import Celery

from supervisor.app import QUEUE, VISIBILITY_TIMEOUT_S
from supervisor.failpoints import POINTS
from supervisor.recovery.context import REDIS_DEDUP_KEY, session_dedup_key
from supervisor.recovery.runtime import build_engine
from supervisor.recovery.scanner import Scanner
from supervisor.settings import Settings
from tests.chaos.common import Stuck, add_zombie, recovered_note, settle, tally
from tests.chaos.harness import (
    FLOWER_PASSWORD,
    METRICS_PASSWORD,
    Cluster,
    Proc,
)
from tests.chaos.inline import UNSAFE_VARIANTS
from tests.chaos.oracle import CountingGateway, Row
from tests.support.procs import free_port, wait_for

#: the steps each failpoint is met in (before_ack also ends read-only steps)
STEPS_AT = {
    "before_claim": ("abort", "reset"),
    "after_reread": ("abort", "reset"),
    "after_lease": ("abort", "reset"),
    "after_claim": ("abort", "reset"),
    "after_act": ("abort", "reset"),
    "before_ack": ("abort", "reset", "verify"),
}
SENT = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+): INFO/\w+\] .*Sending due task", re.M)


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _sent_after(proc: Proc, since: datetime) -> int:
    """How many tasks a beat sent at or after `since` (its log's local timestamps)."""
    count = 0
    for stamp in SENT.findall(proc.text()):
        if datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") >= since:
            count += 1
    return count


CRASHES = ("Unrecoverable error", "beat raised exception")


def _finish(
    row: Row,
    c: Cluster,
    gws: list[CountingGateway],
    stuck: list[Stuck],
    started: float,
    *,
    strict: bool = False,
    beat_exits_ok: bool = False,
) -> Row:
    tally(row, gws, c.audit(), {(s.name, s.key) for s in stuck}, strict=strict)
    for proc in c.procs:
        text = proc.text()
        for marker in CRASHES:
            if beat_exits_ok and marker == "beat raised exception":
                continue
            if marker in text:
                row.problems.append(f"{proc.name} logged {marker!r}")
                row.survived = min(row.survived, row.runs - 1)
    row.leaks = len(hits := c.leak_hits())
    row.problems += hits
    row.seconds = time.monotonic() - started
    return row


# -- 1. worker child SIGKILL at each failpoint ------------------------------------------------


def child_kills(root: Path, runs: int, wave: int = 6) -> list[Row]:
    """Each run: one zombie whose worker child is SIGKILLed at a failpoint (once per session);
    the task is requeued at once (reject_on_worker_lost) and must finish without repeating.
    Runs go in waves (several sessions at once, each losing one child)."""
    rows = []
    interval = 1.0
    limit = VISIBILITY_TIMEOUT_S + 2 * interval
    with Cluster(root) as c:
        gws = [c.gateway("v4", "2026.9.6"), c.gateway("v3", "2026.3.24")]
        c.write_fleet()
        c.start_beat("beat")
        per_point = _split(runs, len(POINTS))
        for p_index, point in enumerate(POINTS):
            started = time.monotonic()
            row = Row(f"1. worker child SIGKILL at {point}")
            steps = STEPS_AT[point]
            if per_point[p_index] < len(steps):  # small sizes: rotate the step over points
                steps = tuple(steps[(p_index + i) % len(steps)] for i in range(len(steps)))
            stuck_row: list[Stuck] = []
            notes = []
            for step, n in zip(steps, _split(per_point[p_index], len(steps)), strict=True):
                if n == 0:
                    continue
                once = c.root / "once" / f"{point}-{step}"
                once.mkdir(parents=True, exist_ok=True)
                w = c.start_worker(
                    f"w-{point}-{step}",
                    SUPERVISOR_FAILPOINT=f"{point}:{step}",
                    SUPERVISOR_FAILPOINT_ONCE=str(once / "{tag}"),
                )
                left = n
                while left > 0:
                    batch = [add_zombie(c.sim, gws[i % 2]) for i in range(min(wave, left))]
                    settle(c.store, batch, timeout=120)
                    stuck_row += batch
                    left -= len(batch)
                w.stop()
                fired = len(list(once.iterdir()))
                notes.append(f"{step} {fired}/{n}")
                row.runs += n
            killed = sum(int(n.split()[1].split("/")[0]) for n in notes)
            row.survived = sum(1 for s in stuck_row if s.took is not None and s.took <= limit)
            if killed < row.runs:
                row.problems.append(f"only {killed} of {row.runs} runs lost their worker child")
                row.survived -= row.runs - killed
            row.notes += [
                "killed at " + ", ".join(notes),
                recovered_note(stuck_row, limit),
            ]
            rows.append(_finish(row, c, gws, stuck_row, started))
    return rows


# -- 2. whole worker SIGKILL + restart mid-recovery ---------------------------------------------


def worker_kills(root: Path, runs: int) -> Row:
    """Each run: zombies appear, the whole worker (master and children) is SIGKILLed while it
    recovers them and a new one started. Its unacknowledged tasks come back only after the
    visibility timeout; the lease (short here) expires and the next scan starts a new attempt."""
    started = time.monotonic()
    row = Row("2. whole worker SIGKILL + restart")
    rng = random.Random(2)
    with Cluster(root) as c:
        c.env_extra["SUPERVISOR_LEASE_TTL_S"] = "5"
        c.env_extra["SUPERVISOR_STEP_TIME_LIMIT_S"] = "4"
        gws = [c.gateway("v4", "2026.9.6"), c.gateway("v3", "2026.3.24")]
        for gw in gws:
            gw.delay_s = 0.15  # every answer takes a while: an attempt spans a second or two
        c.write_fleet()
        c.start_beat("beat")
        workers = [c.start_worker("wa"), c.start_worker("wb")]
        stuck: list[Stuck] = []
        in_flight = 0
        for i in range(runs):
            batch = [add_zombie(c.sim, gw) for gw in gws]
            stuck += batch
            # kill once an attempt is under way, at a random moment of it
            with contextlib.suppress(TimeoutError):
                wait_for(
                    "an attempt",
                    lambda b=batch: any(c.store.leases.holder(s.name, s.key) for s in b),
                    10,
                    every=0.05,
                )
            time.sleep(rng.uniform(0.0, 1.2))
            if any(c.store.leases.holder(s.name, s.key) for s in batch):
                in_flight += 1
            alive = [w for w in workers if w.alive]
            victim = rng.choice(alive) if alive else None
            if victim is not None:
                victim.kill()
                workers.remove(victim)
            workers.append(c.start_worker(f"w{i}", wait=False))
            row.runs += 1
            wait_for("a worker ready", lambda: any(" ready." in w.text() for w in workers), 60)
        settle(c.store, stuck, timeout=90)
        per_run = [stuck[i : i + len(gws)] for i in range(0, len(stuck), len(gws))]
        row.survived = sum(1 for batch in per_run if all(s.took is not None for s in batch))
        row.notes += [f"{in_flight} kills with an attempt in flight", recovered_note(stuck)]
        return _finish(row, c, gws, stuck, started)


# -- 4b. the same step task sent N times through Celery -----------------------------------------


def celery_duplicates(root: Path, runs: int) -> Row:
    """Each run: a scan (in this process) starts an attempt; its abort task is then sent 2-10
    times (apply_async, same arguments); every copy runs on real workers and enqueues its
    follow-ups, so resets and verifies come N-fold too. Exactly one abort and one reset."""
    started = time.monotonic()
    row = Row("4b. same step task sent 2-10 times (Celery)")
    rng = random.Random(4)
    with Cluster(root) as c:
        gws = [c.gateway("v4", "2026.9.6"), c.gateway("v3", "2026.3.24")]
        c.write_fleet()
        for name in ("wa", "wb"):
            c.start_worker(name, concurrency=3)
        settings = Settings(
            state_dir=c.root / "state", key_prefix="ls:", verify_delay_s=0.2, lease_ttl_s=30
        )
        engine = build_engine(settings, c.url, fleet_path=c.fleet)
        client = Celery(broker=c.url, set_as_current=False)
        client.conf.update(task_serializer="json", accept_content=["json"])
        stuck: list[Stuck] = []
        copies = []
        try:
            for i in range(runs):
                s = add_zombie(c.sim, gws[i % 2])
                out = Scanner(engine).scan(s.name, only_key=s.key)
                (start,) = out.starts
                n = rng.randint(2, 10)
                copies.append(n)
                kwargs = {"gateway": s.name, "key": s.key, "ref": start.ref.model_dump(mode="json")}
                for _ in range(n):
                    client.send_task("supervisor.abort_session", kwargs=kwargs, queue=QUEUE)
                stuck.append(s)
                row.runs += 1
            settle(c.store, stuck, timeout=60)
            time.sleep(2)  # the last copies run out
        finally:
            engine.store.close()
            client.close()
        row.survived = sum(1 for s in stuck if s.took is not None)
        row.notes.append(f"{sum(copies)} copies sent")
        return _finish(row, c, gws, stuck, started, strict=True)


# -- 5. two beats ---------------------------------------------------------------------------


def two_beats(root: Path, seconds: float, interval: float = 2.0) -> Row:
    """Two beats for `seconds`: one ticks, every gateway is scanned each interval, and zombies
    appearing meanwhile are healed once."""
    started = time.monotonic()
    row = Row(f"5. two beats for {seconds / 60:.1f} min")
    rng = random.Random(5)
    tolerance = 1.5  # beat's loop interval (0.5 s) and a busy machine
    with Cluster(root, scan_interval=f"{interval:g}s") as c:
        gws = [
            c.gateway("busy-4", "2026.9.6"),
            c.gateway("busy-3", "2026.3.24"),
            c.gateway("idle-4", "2026.9.6"),
            c.gateway("idle-3", "2026.3.24"),
        ]
        for gw in gws:
            c.sim.call(gw.add_idle, "agent:main:done")
        c.write_fleet()
        beats = [c.start_beat("beat-a"), c.start_beat("beat-b")]
        c.start_worker("wa")
        c.start_worker("wb")
        warm = time.monotonic() + 2 * interval + 3  # first runs are spread over an interval
        stuck: list[Stuck] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if time.monotonic() > warm:
                stuck.append(add_zombie(c.sim, gws[rng.randrange(2)]))
            time.sleep(min(4.0, max(0.0, end - time.monotonic())))
        stop = time.monotonic()
        settle(c.store, stuck, timeout=30)
        missed = windows = 0
        worst = 0.0
        for gw in gws:
            times = [t for t in gw.lists if warm <= t <= stop]
            if not times:
                windows += int((stop - warm) / interval)
                missed += int((stop - warm) / interval)
                continue
            edges = [warm, *times, stop]
            for a, b in itertools.pairwise(edges):
                worst = max(worst, b - a)
                if b - a > interval + tolerance:
                    missed += int((b - a) // interval)
            windows += int((stop - warm) / interval)
        row.runs = windows
        row.survived = windows - missed
        sent = [len(SENT.findall(b.text())) for b in beats]
        ticking = sum(1 for n in sent if n > 0)
        if ticking != 1:
            row.problems.append(f"{ticking} beats sent tasks ({sent})")
            row.survived = min(row.survived, row.runs - 1)
        healed = sum(1 for s in stuck if s.took is not None)
        if healed < len(stuck):
            row.problems.append(f"only {healed} of {len(stuck)} zombies healed")
            row.survived = min(row.survived, row.runs - 1)
        row.notes += [
            f"gateway x {interval:g} s windows; longest gap between scans {worst:.1f} s",
            f"tasks sent per beat {sent}",
            f"{healed}/{len(stuck)} zombies healed",
        ]
        return _finish(row, c, gws, stuck, started)


# -- 6. the beat lock holder SIGSTOPped past its lock timeout --------------------------------


def beat_stop(root: Path, runs: int, lock_timeout: float = 3.0) -> Row:
    """Each run: SIGSTOP the beat holding the lock for longer than its lock timeout, SIGCONT it.
    The other beat must take over; the resumed one must send nothing (and, when it finds its
    lock gone, exit: it is restarted here as compose's restart policy would)."""
    started = time.monotonic()
    row = Row("6. beat lock holder SIGSTOPped past its lock timeout")
    rng = random.Random(6)
    with Cluster(root) as c:
        c.env_extra["SUPERVISOR_BEAT_LOCK_TIMEOUT_S"] = f"{lock_timeout:g}"
        gws = [c.gateway("v4", "2026.9.6"), c.gateway("v3", "2026.3.24")]
        c.write_fleet()
        c.start_worker("w")
        beats = {"a": c.start_beat("beat-a-0")}
        wait_for("beat a holds the lock", lambda: "Acquired lock" in beats["a"].text(), 30)
        beats["b"] = c.start_beat("beat-b-0")
        holder = "a"
        stuck: list[Stuck] = []
        exits = 0
        for i in range(runs):
            other = "b" if holder == "a" else "a"
            wait_for(
                f"beat {holder} sends tasks", lambda h=holder: SENT.search(beats[h].text()), 30
            )
            time.sleep(rng.uniform(0, 1.0))
            acquired = beats[other].text().count("Acquired lock")
            os.kill(beats[holder].popen.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            stuck.append(add_zombie(c.sim, gws[i % 2]))
            took_over = True
            try:
                wait_for(
                    "the other beat takes over",
                    lambda o=other, n=acquired: beats[o].text().count("Acquired lock") > n,
                    lock_timeout + 20,
                )
            except TimeoutError:
                took_over = False
            gap = time.monotonic() - stopped
            time.sleep(max(0.0, lock_timeout + 1 - gap))
            resumed_at = datetime.now()
            os.kill(beats[holder].popen.pid, signal.SIGCONT)
            time.sleep(3)
            late = _sent_after(beats[holder], resumed_at)
            if not beats[holder].alive:
                exits += 1
                beats[holder] = c.start_beat(f"beat-{holder}-{i + 1}")
            settle(c.store, stuck[-1:], timeout=20)
            ok = took_over and late == 0 and stuck[-1].took is not None
            if not ok:
                row.problems.append(
                    f"run {i}: took over {took_over}, {late} tasks sent after SIGCONT, "
                    f"healed {stuck[-1].took is not None}"
                )
            row.runs += 1
            row.survived += ok
            holder = other
        row.notes.append(f"resumed beat exited (lock lost) {exits}/{runs} times")
        return _finish(row, c, gws, stuck, started, beat_exits_ok=True)


# -- 7. Redis SIGKILL + restart ------------------------------------------------------------------


def redis_restarts(root: Path, runs: int) -> Row:
    """Each run: zombies appear, valkey is SIGKILLed at a random moment and restarted on its
    append-only file; scanning must be back within 30 s and nothing done twice."""
    started = time.monotonic()
    row = Row("7. Redis SIGKILL + restart (AOF on)")
    rng = random.Random(7)
    with Cluster(root) as c:
        c.env_extra["SUPERVISOR_LEASE_TTL_S"] = "5"
        c.env_extra["SUPERVISOR_STEP_TIME_LIMIT_S"] = "4"
        gws = [c.gateway("v4", "2026.9.6"), c.gateway("v3", "2026.3.24")]
        idle = c.gateway("idle", "2026.9.6")  # only scans list it
        c.write_fleet()
        c.start_beat("beat")
        c.start_worker("wa")
        c.start_worker("wb")
        stuck: list[Stuck] = []
        backs = []
        for i in range(runs):
            batch = [add_zombie(c.sim, gw) for gw in gws]
            stuck += batch
            time.sleep(rng.uniform(0.0, 2.0))
            c.redis.kill_hard()
            time.sleep(rng.uniform(0.0, 1.0))
            c.redis.restart()
            back_from = time.monotonic()
            try:
                wait_for(
                    "a scan after Redis came back",
                    lambda t=back_from: any(x > t for x in idle.lists),
                    30,
                )
                backs.append(time.monotonic() - back_from)
                back = True
            except TimeoutError:
                back = False
                row.problems.append(f"run {i}: no scan within 30 s of Redis coming back")
            settle(c.store, batch, timeout=30)
            row.runs += 1
            row.survived += back and all(s.took is not None for s in batch)
        alive = {p.name: p.alive for p in c.procs}
        if not all(alive.values()):
            row.problems.append(f"processes that exited: {alive}")
        row.notes += [
            f"scanning back after {max(backs, default=0):.1f} s at worst",
            recovered_note(stuck),
        ]
        return _finish(row, c, gws, stuck, started)


# -- 8b. a Redis that would lose or evict state, with real processes -----------------------------


def not_durable_real(root: Path, variant: str) -> Row:
    """Worker and beat against a valkey with one unsafe setting: no action, one page."""
    started = time.monotonic()
    appendonly, args, _ = UNSAFE_VARIANTS[variant]
    row = Row(f"8b. Redis {variant}, real worker and beat")
    with Cluster(root, appendonly=appendonly, redis_args=args) as c:
        gws = [c.gateway("v4", "2026.9.6"), c.gateway("v3", "2026.3.24")]
        stuck = [add_zombie(c.sim, gw) for gw in gws]
        c.write_fleet()
        c.start_worker("w")
        c.start_beat("beat")
        assert c.pages is not None
        wait_for("the page", lambda: c.pages.triggers().get(REDIS_DEDUP_KEY), 30)
        time.sleep(5)  # several more scans, each refusing
        audit = c.audit()
        refused = sum(1 for r in audit if r.outcome == "refused")
        escalations = sum(1 for r in audit if r.outcome == "redis_not_durable")
        pages = c.pages.triggers()
        ok = (
            pages == {REDIS_DEDUP_KEY: 1}
            and escalations == 1
            and refused >= 2
            and not any(gw.acts for gw in gws)
        )
        row.runs, row.survived = 1, int(ok)
        if not ok:
            row.problems.append(f"pages {pages}, escalations {escalations}, refused {refused}")
        row.notes.append(f"{refused} scans refused, {escalations} escalation, pages {pages}")
        for gw in gws:
            row.wrong += len(gw.acts)  # nothing may be sent at all here
        return _finish(row, c, gws, stuck, started)


# -- 11. a step that crashes its worker every time ------------------------------------------------


def crash_loop(root: Path, runs: int, max_deliveries: int = 3) -> Row:
    """Each run: a zombie whose abort kills its worker child at every delivery (failpoint without
    ONCE). At most `max_deliveries` deliveries run it, the next one gives up and escalates once;
    then nothing is delivered again."""
    started = time.monotonic()
    row = Row("11. step crashing its worker every time")
    with Cluster(root) as c:
        gws = [c.gateway("v4", "2026.9.6"), c.gateway("v3", "2026.3.24")]
        c.write_fleet()
        c.start_beat("beat")
        w = c.start_worker(
            "w",
            SUPERVISOR_FAILPOINT="before_claim:abort",
            SUPERVISOR_MAX_STEP_DELIVERIES=str(max_deliveries),
            # the lease outlives the crash loop even on a loaded machine: one attempt per run
            # (a lease expiring mid-loop lets the next scan start a second, equally poisoned one)
            SUPERVISOR_LEASE_TTL_S="120",
        )
        stuck = [add_zombie(c.sim, gws[i % 2]) for i in range(runs)]
        settle(c.store, stuck, timeout=60 + 10 * runs)

        def deliveries() -> list[int]:
            keys = c.store.client.keys("ls:step:*:deliveries")
            return sorted(int(c.store.client.get(k) or 0) for k in keys)

        # every crashing task runs until its last delivery gives up; on a loaded machine the
        # last redeliveries come seconds after the escalation, so wait for them (bounded)
        # instead of a fixed pause, then watch that nothing more is delivered
        with contextlib.suppress(TimeoutError):
            wait_for(
                "every crashing task given up",
                lambda: (
                    (
                        len([n for n in deliveries() if n > 1]) >= runs
                        and all(n >= max_deliveries + 1 for n in deliveries() if n > 1)
                    )
                    or None
                ),
                60 + 10 * runs,
                every=0.5,
            )
        time.sleep(2)
        before = deliveries()
        kills_before = w.text().count("exited with 'signal 9")
        time.sleep(4)
        after = deliveries()
        kills = w.text().count("exited with 'signal 9")
        assert c.pages is not None
        pages = c.pages.triggers()
        looping = [n for n in after if n > 1]
        for s in stuck:
            key = session_dedup_key(s.name, s.key)
            ok = s.escalated and pages.get(key) == 1
            row.runs += 1
            row.survived += ok
            if not ok:
                row.problems.append(f"{key}: escalated {s.escalated}, pages {pages.get(key)}")
        if after != before or kills != kills_before:
            row.problems.append(f"still redelivered: {before} -> {after}")
            row.survived = 0
        if any(n > max_deliveries + 1 for n in looping) or len(looping) != runs:
            row.problems.append(f"deliveries per crashing task {looping}")
            row.survived = 0
        row.notes += [
            f"deliveries per crashing task {sorted(set(looping))} (cap {max_deliveries}, "
            "the last one gives up)",
            f"{kills} worker children killed",
            f"pages per dedup_key {sorted(set(pages.values()))}",
        ]
        return _finish(row, c, gws, stuck, started)


# -- 12. the same stuck condition over many scans plus worker kills: one page -------------------


def one_page(root: Path, scans: int, random_kills: int = 1) -> Row:
    """Four unhealable zombies (no operator.admin), escalated after two attempts, then scanned
    `scans` times while worker children die (once per session at before_ack of the escalation,
    plus random kills): exactly one page per dedup_key."""
    started = time.monotonic()
    row = Row(f"12. one stuck condition, {scans} scans, worker kills")
    rng = random.Random(12)
    with Cluster(root, defaults="max_attempts = 2") as c:
        gws = [
            c.gateway("na-1", "2026.9.6", grant_admin=False),
            c.gateway("na-2", "2026.9.6", grant_admin=False),
        ]
        stuck = [add_zombie(c.sim, gw) for gw in gws for _ in range(2)]
        c.write_fleet()
        c.start_beat("beat")
        once = c.root / "once"
        once.mkdir()
        w = c.start_worker(
            "w",
            SUPERVISOR_FAILPOINT="before_ack:escalate",
            SUPERVISOR_FAILPOINT_ONCE=str(once / "{tag}"),
        )
        settle(c.store, stuck, timeout=60)  # escalated: from now on every list is a scan
        lists = [len(gw.lists) for gw in gws]
        kill_at = sorted(rng.sample(range(2, max(3, scans)), random_kills))
        killed = 0
        for n in range(scans):
            target = [lists[i] + n + 1 for i in range(len(gws))]
            wait_for(
                f"scan {n}",
                lambda t=target: all(len(g.lists) >= t[i] for i, g in enumerate(gws)),
                30,
            )
            if killed < random_kills and n >= kill_at[killed]:
                children = w.children()
                if children:
                    os.kill(rng.choice(children), signal.SIGKILL)
                    killed += 1
        time.sleep(3)
        assert c.pages is not None
        pages = c.pages.triggers()
        fired = len(list(once.iterdir()))
        for s in stuck:
            key = session_dedup_key(s.name, s.key)
            ok = s.escalated and pages.get(key) == 1
            row.runs += 1
            row.survived += ok
            if not ok:
                row.problems.append(f"{key}: escalated {s.escalated}, pages {pages.get(key)}")
        extra = {
            k: v
            for k, v in pages.items()
            if k not in {session_dedup_key(s.name, s.key) for s in stuck}
        }
        if extra:
            row.problems.append(f"unexpected pages {extra}")
            row.survived = 0
        row.notes += [
            f"{fired + killed} worker kills ({fired} at before_ack:escalate, {killed} random)",
            f"pages per dedup_key {sorted(pages.values())}",
        ]
        return _finish(row, c, gws, stuck, started)


# -- 15. secrets through the whole pipeline; Flower and metrics need credentials ----------------


FLOWER_PAGES = (
    "/",
    "/tasks",
    "/workers",
    "/broker",
    "/api/tasks",
    "/api/workers?refresh=1",
    "/api/queues/length",
)


def secrets(root: Path) -> Row:
    """Canary gateway token, PagerDuty routing key, webhook HMAC secret, Redis password and the
    Flower/metrics passwords through a recovery, an escalation and a gateway error: none may
    show up anywhere; Flower and /metrics answer 401 without credentials."""
    started = time.monotonic()
    row = Row("15. secrets (canaries) and auth")
    with Cluster(root, defaults="max_attempts = 1") as c:
        gws = [
            c.gateway("v4", "2026.9.6"),
            c.gateway("v3", "2026.3.24"),
            c.gateway("no-admin", "2026.9.6", grant_admin=False),
        ]
        # a gateway that refuses our token: its error text is audited, logged and paged
        refuses = c.gateway("refuses", "2026.9.6")
        refuses.token = "some-other-token"
        stuck = [add_zombie(c.sim, gw) for gw in gws]
        c.write_fleet()
        flower_port, metrics_port = free_port(), free_port()
        metrics_dir = c.root / "metrics"
        metrics_dir.mkdir()
        c.env_extra["SUPERVISOR_METRICS_DIR"] = str(metrics_dir)
        c.start_worker("w", events=True)
        c.start_beat("beat")
        c.spawn(
            "flower",
            [*_celery(), "flower", "--address=127.0.0.1", f"--port={flower_port}"],
            c.env(FLOWER_BASIC_AUTH=f"admin:{FLOWER_PASSWORD}"),
        )
        c.spawn(
            "metrics",
            [sys.executable, "-m", "supervisor", "metrics"],
            c.env(
                SUPERVISOR_METRICS_PASSWORD=METRICS_PASSWORD,
                SUPERVISOR_METRICS_PORT=str(metrics_port),
            ),
        )
        settle(c.store, stuck, timeout=60)
        assert c.pages is not None
        wait_for("pages", lambda: len(c.pages.triggers()) >= 2, 40)
        flower = f"http://127.0.0.1:{flower_port}"
        auth = ("admin", FLOWER_PASSWORD)
        wait_for("flower", lambda: _get(flower + "/api/tasks", auth)[0] == 200, 30)
        time.sleep(2)
        bodies: list[bytes] = []
        checks: list[tuple[str, bool]] = []
        task_ids: list[str] = []
        for page in FLOWER_PAGES:
            status, body = _get(flower + page, auth)
            bodies.append(body)
            checks.append((f"flower {page} with credentials answers 200", status == 200))
            if page == "/api/tasks" and status == 200:
                task_ids = list(httpx.Response(200, content=body).json())[:20]
        for task_id in task_ids:
            bodies.append(_get(f"{flower}/task/{task_id}", auth)[1])
            bodies.append(_get(f"{flower}/api/task/info/{task_id}", auth)[1])
        for page in ("/", "/api/tasks", "/api/workers", "/tasks"):
            status, _ = _get(flower + page, None)
            checks.append((f"flower {page} without credentials answers 401", status == 401))
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_for("metrics", lambda: _get(metrics, ("metrics", METRICS_PASSWORD))[0] == 200, 30)
        status, body = _get(metrics, ("metrics", METRICS_PASSWORD))
        bodies.append(body)
        checks.append(("/metrics with credentials answers 200", status == 200))
        checks.append(("/metrics without credentials answers 401", _get(metrics, None)[0] == 401))
        checks.append(
            (
                "/metrics with a wrong password answers 401",
                _get(metrics, ("metrics", "wrong"))[0] == 401,
            )
        )
        audit = c.audit()
        texts = b"\n".join(bodies) + "\n".join(r.model_dump_json() for r in audit).encode()
        checks.append(
            (
                "the token-refusing gateway's error is audited",
                any("token" in (r.detail or "") for r in audit if r.gateway == "refuses"),
            )
        )
        checks.append(("the escalation was paged", len(c.pages.triggers()) >= 2))
        hits = c.leak_hits(extra=texts)
        surfaces = len([p for p in c.root.rglob("*") if p.is_file()]) + len(bodies) + 2
        row.runs = surfaces + len(checks)
        failed = [name for name, ok in checks if not ok]
        row.survived = row.runs - len(failed) - len(hits)
        row.problems += [f"check failed: {f}" for f in failed]
        row.notes.append(
            f"{surfaces} surfaces grepped (files incl. logs and AOF, every Redis key, "
            f"{len(bodies)} Flower/metrics answers, audit, pages); {len(checks)} auth checks"
        )
        tally(row, [*gws, refuses], audit, None)
        row.leaks = len(hits)
        row.problems += hits
        row.seconds = time.monotonic() - started
        return row


def _celery() -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "supervisor.app"]


def _get(url: str, auth: tuple[str, str] | None) -> tuple[int, bytes]:
    try:
        r = httpx.get(url, auth=auth, timeout=10)
    except httpx.HTTPError:
        return 0, b""
    return r.status_code, r.content

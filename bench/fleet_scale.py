"""Fleet scale: a real beat + worker + embedded valkey supervising many simulated gateways.

Each gateway holds 100 sessions, 1% of them zombies (healed during the first interval), 10% live
runs and the rest idle; scan_interval is 60 s. Measured over a window of a few intervals that
starts when beat has created every scan entry (first scans are spread over the first interval):

* CPU share of 2 cores used by worker (parent + pool children) + beat + valkey, from /proc;
  the simulator runs in this process and is not counted;
* worker RSS (parent + children, peak over the window), valkey `used_memory` at the end;
* scan lag: how late each scan runs against its schedule. The due time of a gateway's first
  scan is when beat created its entry plus its spread offset; each later one is due one
  interval after beat sent the previous one (redbeat anchors the schedule there). Beat's send
  times come from its log; the scan's start is the simulator's first connection to that
  gateway after the send. lag = start - due (beat's own delay and the worker's pick-up delay are
  given apart), and `drift` against the ideal cadence (first due + k * interval);
* Redis commands per scan for the whole stack (broker, results, events, state, audit).

    python -m bench.fleet_scale [--size smoke|full] [--gateways 100 1000 ...] [--intervals 3]
"""

from __future__ import annotations

import bisect
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    RecordingSimulator,
    Size,
    group_pids,
    parser,
    rnd,
    say,
    summary,
    write_result,
)
from bench.stack import Stack, beat_entries, beat_sends, running_stack
from supervisor.schedule import ENTRY_PREFIX, spread_offset_s
from supervisor.simulator.demo import populate_bulk

CORES = 2
TARGETS = {"gateways": 1000, "cpu_share_max": 0.5, "lag_s_max": 5.0, "worker_rss_mb_max": 200.0}
#: size -> (gateway counts, sessions per gateway, scan interval s, measured intervals)
PLANS: dict[Size, tuple[tuple[int, ...], int, float, int]] = {
    "smoke": ((2, 4, 8), 100, 1.0, 3),
    "full": ((100, 1000, 2000), 100, 60.0, 3),
}
MB = 1024 * 1024


def lags(
    sends: dict[str, list[float]],
    connects: dict[str, list[float]],
    created: dict[str, float],
    interval: float,
) -> dict[str, Any]:
    """Per-scan lag figures (see the module doc)."""
    lag, beat_delay, pickup, drift = [], [], [], []
    not_started = 0
    start_of_apply = min(created.values()) if created else 0.0
    for name, times in sends.items():
        if name not in created:
            continue
        first_due = start_of_apply + spread_offset_s(ENTRY_PREFIX + name, interval)
        seen = sorted(connects.get(name, []))
        for k, sent in enumerate(times):
            due = first_due if k == 0 else times[k - 1] + interval
            i = bisect.bisect_left(seen, sent - 0.005)  # log stamps are to the millisecond
            if i >= len(seen):
                not_started += 1
                continue
            began = seen[i]
            lag.append(max(0.0, began - due))
            beat_delay.append(max(0.0, sent - due))
            pickup.append(max(0.0, began - sent))
            drift.append(began - (first_due + k * interval))
    return {
        "scans": len(lag),
        "not_started_before_stop": not_started,
        "lag_s": summary(lag),
        "beat_delay_s": summary(beat_delay),
        "pickup_s": summary(pickup),
        "drift_s": summary(drift),
    }


def audit_outcomes(stack: Stack) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, fields in stack.audit():
        name = f"{fields.get('step')}:{fields.get('outcome')}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def run_size(
    gateways: int, sessions: int, interval: float, intervals: int, work: Path
) -> dict[str, Any]:
    sim = RecordingSimulator()
    populate_bulk(sim, gateways, sessions, 0.01)
    settings = {"SUPERVISOR_BEAT_MAX_LOOP_INTERVAL_S": "1"} if interval < 5 else {}
    with running_stack(
        sim, work, defaults=f'scan_interval = "{interval:g}s"', settings=settings
    ) as stack:
        created = beat_entries(stack.beat_log)
        meter = stack.meter()
        meter.sample()
        stats0 = stack.redis_info("stats")
        t0 = time.time()
        window = interval * intervals
        per_interval: list[dict[str, float]] = []
        rss_peak = pss_peak = beat_rss_peak = 0
        next_boundary = t0 + interval
        while True:
            now = time.time()
            if now >= t0 + window:
                break
            time.sleep(min(1.0, t0 + window - now))
            meter.sample()
            rss_peak = max(rss_peak, stack.worker_rss())
            pss_peak = max(pss_peak, stack.worker_pss())
            beat_rss_peak = max(beat_rss_peak, stack.beat_rss())
            if time.time() >= next_boundary - 0.05:
                per_interval.append(meter.used())
                next_boundary += interval
        meter.sample()
        t1 = time.time()
        used = meter.used()
        rss_end = stack.worker_rss()
        worker_procs = len(group_pids(stack.worker_pgid))
        memory = stack.redis_info("memory")
        stats1 = stack.redis_info("stats")
        outcomes = audit_outcomes(stack)
        keys = int(stack.client.dbsize())
        worker_log, beat_log = stack.worker_log, stack.beat_log
    # processes are stopped: read what they left
    sends = beat_sends(beat_log)
    in_window = sum(1 for times in sends.values() for t in times if t0 <= t <= t1)
    lag = lags(sends, sim.connect_times, created, interval)
    worker_text = worker_log.read_text(errors="replace")
    span = t1 - t0
    cpu_total = sum(used.values())
    shares, previous = [], dict.fromkeys(used, 0.0)
    for snap in per_interval:
        shares.append(rnd(sum(snap[k] - previous[k] for k in snap) / (interval * CORES)))
        previous = snap
    commands = int(stats1["total_commands_processed"]) - int(stats0["total_commands_processed"])
    return {
        "gateways": gateways,
        "sessions_per_gateway": sessions,
        "scan_interval_s": interval,
        "window_s": rnd(span, 1),
        "cpu_share": rnd(cpu_total / (span * CORES)),
        "cpu_share_per_interval": shares,
        "cpu_s": {k: rnd(v, 2) for k, v in used.items()},
        "worker_rss_mb_peak": rnd(rss_peak / MB, 1),
        "worker_rss_mb_end": rnd(rss_end / MB, 1),
        "worker_pss_mb_peak": rnd(pss_peak / MB, 1),
        "worker_processes": worker_procs,
        "beat_rss_mb_peak": rnd(beat_rss_peak / MB, 1),
        "redis_used_memory_mb": rnd(int(memory["used_memory"]) / MB, 2),
        "redis_keys": keys,
        "scans_sent_in_window": in_window,
        "scans_per_s": rnd(in_window / span, 2),
        "redis_commands_per_s": rnd(commands / span, 1),
        "redis_commands_per_scan": rnd(commands / in_window, 1) if in_window else None,
        "zombies": gateways * round(sessions * 0.01),
        "healed": outcomes.get("verify:healed", 0),
        "audit": outcomes,
        "worker_errors": sum(
            1 for line in worker_text.splitlines() if "ERROR/" in line or "Traceback" in line
        ),
        "expired_scans": worker_text.count("expired"),
        **lag,
    }


def verdict(runs: list[dict[str, Any]]) -> dict[str, Any]:
    at = next((r for r in runs if r["gateways"] == TARGETS["gateways"]), None)
    if at is None:
        return {"note": f"no run at {TARGETS['gateways']} gateways (smoke size)"}
    lag_max = at["lag_s"]["max"] or 0.0
    return {
        "cpu_share": {"max": TARGETS["cpu_share_max"], "value": at["cpu_share"],
                      "met": at["cpu_share"] < TARGETS["cpu_share_max"]},
        "lag_s": {"max": TARGETS["lag_s_max"], "value": lag_max,
                  "met": lag_max < TARGETS["lag_s_max"]},
        "worker_rss_mb": {"max": TARGETS["worker_rss_mb_max"], "value": at["worker_rss_mb_peak"],
                          "met": at["worker_rss_mb_peak"] < TARGETS["worker_rss_mb_max"]},
    }  # fmt: skip


def run(
    size: Size, out: Path, gateways: tuple[int, ...] | None = None, intervals: int | None = None
) -> dict[str, Any]:
    counts, sessions, interval, default_intervals = PLANS[size]
    counts = gateways or counts
    intervals = intervals or default_intervals
    runs = []
    for g in counts:
        say(f"fleet_scale: {g} gateways x {sessions} sessions, every {interval:g}s, "
            f"{intervals} interval(s)")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
            got = run_size(g, sessions, interval, intervals, Path(tmp))
        say(
            f"  cpu {got['cpu_share']:.1%} of {CORES} cores, worker rss {got['worker_rss_mb_peak']}"
            f" MB, redis {got['redis_used_memory_mb']} MB, lag p95 {got['lag_s']['p95']} s "
            f"max {got['lag_s']['max']} s, healed {got['healed']}/{got['zombies']}"
        )
        runs.append(got)
    headline = next((r for r in runs if r["gateways"] == TARGETS["gateways"]), runs[-1])
    doc = {
        "method": "real worker (--concurrency=2, -E) + beat + embedded valkey as subprocesses; "
        "simulator (2026.9.6) in the benchmark process, not counted; CPU from /proc over the "
        f"window; {intervals} scan interval(s) measured from the moment beat has every entry",
        "figures": {
            "gateways": headline["gateways"],
            "cpu_share": headline["cpu_share"],
            "worker_rss_mb_peak": headline["worker_rss_mb_peak"],
            "worker_pss_mb_peak": headline["worker_pss_mb_peak"],
            "redis_used_memory_mb": headline["redis_used_memory_mb"],
            "lag_s_p95": headline["lag_s"]["p95"],
            "lag_s_max": headline["lag_s"]["max"],
            "redis_commands_per_scan": headline["redis_commands_per_scan"],
            "healed": headline["healed"],
            "zombies": headline["zombies"],
        },
        "targets": verdict(runs),
        "growth": runs,
    }
    write_result(out, "fleet_scale", size, doc)
    return doc


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__ or "")
    p.add_argument("--gateways", type=int, nargs="+", help="gateway counts (default by size)")
    p.add_argument("--intervals", type=int, help="scan intervals to measure (default by size)")
    args = p.parse_args(argv)
    gateways = tuple(args.gateways) if args.gateways else None
    doc = run(args.size, args.out, gateways, args.intervals)
    print(json.dumps(doc["figures"]))


if __name__ == "__main__":
    main()

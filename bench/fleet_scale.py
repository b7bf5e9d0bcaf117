"""Fleet scale: a real beat + workers + embedded valkey supervising many simulated gateways.

Each gateway holds 100 sessions, 1% of them zombies (healed during the first interval), 10% live
runs and the rest idle; scan_interval is 60 s. The workers are `up`'s (`--layout up`, the
default: one consumer per queue group, `supervisor.up.child_commands`) or the single worker of
the first benchmarks (`--layout single`). Measured over a window of a few intervals that
starts when beat has created every scan entry (first scans are spread over the first interval):

* CPU share of 2 cores used by the workers (parents + pool children) + beat + valkey, from
  /proc, in all and per process group (beat's share apart); the simulator is not counted (it
  runs in this process, or with `--simproc` in its own, whose CPU is reported beside);
* worker RSS (every worker process, parents + children, summed; peak over the window), valkey
  `used_memory` at the end;
* pick-up latency per task kind (`bench.probe`): started on a worker minus the later of sent
  and eta, with the depth of the scan and act queues sampled each second (the step pick-up
  target is about steps while scans queue);
* scan lag: how late each scan runs against its schedule. The due time of a gateway's first
  scan is when beat created its entry plus its spread offset; each later one is due one
  interval after beat sent the previous one (redbeat anchors the schedule there). Beat's send
  times come from its log; the scan's start is the simulator's first connection to that
  gateway after the send. lag = start - due (beat's own delay and the worker's pick-up delay are
  given apart), and `drift` against the ideal cadence (first due + k * interval);
* Redis commands per scan for the whole stack (broker, results, events, state, audit).

    python -m bench.fleet_scale [--size smoke|full] [--gateways 100 1000 ...] [--intervals 3]
        [--layout up|single] [--simproc] [--zombie-share 0.01] [--tag NAME] [--set VAR=VALUE ...]

`--tag` names the result file (`fleet_scale-<size>-<tag>.json`) so variants sit beside the
headline run; `--set` passes SUPERVISOR_* settings to every process (e.g. worker concurrency).
"""

from __future__ import annotations

import bisect
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    RecordingSimulator,
    Size,
    cpu_seconds,
    group_pids,
    parser,
    rnd,
    say,
    summary,
    write_result,
)
from bench.probe import read_probes
from bench.simproc import SimProcess
from bench.stack import LAYOUTS, Layout, Stack, beat_entries, beat_sends, running_stack
from supervisor.queues import ACT_QUEUE, PAGE_QUEUE, SCAN_QUEUE
from supervisor.schedule import ENTRY_PREFIX, spread_offset_s
from supervisor.simulator.demo import populate_bulk

CORES = 2
TARGETS = {
    "gateways": 1000, "cpu_share_max": 0.5, "lag_s_max": 5.0, "worker_rss_mb_max": 200.0,
    "pickup_gateways": 2000, "step_pickup_s_p95_max": 2.0,
    # steady state (no zombies: `--zombie-share 0`), simulator in its own process
    "big_gateways": 5000, "big_cpu_share_max": 0.6, "big_lag_s_p95_max": 5.0,
}  # fmt: skip
STEP_TASKS = frozenset(
    f"supervisor.{n}_session" for n in ("abort", "reset", "verify", "redeliver", "escalate")
)
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
    dues: list[float] = []
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
            dues.append(due)
            beat_delay.append(max(0.0, sent - due))
            pickup.append(max(0.0, began - sent))
            drift.append(began - (first_due + k * interval))
    return {
        "scans": len(lag),
        "_dues": dues,
        "_lags": lag,
        "not_started_before_stop": not_started,
        "lag_s": summary(lag),
        "beat_delay_s": summary(beat_delay),
        "pickup_s": summary(pickup),
        "drift_s": summary(drift),
    }


def per_interval_lag(
    dues: list[float], lag: list[float], t0: float, interval: float, intervals: int
) -> list[dict[str, float | int | None]]:
    """Lag summary of the scans due in each measured interval (the first one's scans may be
    due before the window opens: they count in the first)."""
    buckets: list[list[float]] = [[] for _ in range(intervals)]
    for due, value in zip(dues, lag, strict=True):
        k = min(max(int((due - t0) // interval), 0), intervals - 1)
        if due < t0 + intervals * interval:
            buckets[k].append(value)
    return [summary(b) for b in buckets]


def pickups(probes: list[dict[str, Any]], t0: float, t1: float, interval: float) -> dict[str, Any]:
    """Pick-up latency (started minus the later of sent and eta) per kind of task, over the
    window and over its first interval (when the zombie burst's steps queue with the scans)."""
    kinds: dict[str, list[float]] = {"step": [], "scan": [], "page": []}
    first: dict[str, list[float]] = {"step": [], "scan": [], "page": []}
    by_queue: dict[str, int] = {}
    cpu: dict[str, list[float]] = {}
    for row in probes:
        if row["sent"] is None:
            continue
        ready = max(row["sent"], row["eta"] or 0.0)
        if not t0 - interval <= ready <= t1:
            continue
        name = row["name"]
        kind = "step" if name in STEP_TASKS else "scan" if name.endswith("scan_gateway") else "page"
        wait = max(0.0, row["started"] - ready)
        kinds[kind].append(wait)
        if ready < t0 + interval:
            first[kind].append(wait)
        by_queue[row["queue"]] = by_queue.get(row["queue"], 0) + 1
        cpu.setdefault(name.removeprefix("supervisor."), []).append(row["cpu_s"] * 1000)
    return {
        "task_cpu_ms": {k: summary(v, 2) for k, v in sorted(cpu.items())},
        "pickup_by_kind_s": {k: summary(v) for k, v in kinds.items()},
        "pickup_first_interval_s": {k: summary(v) for k, v in first.items()},
        "tasks_started_by_queue": by_queue,
    }


def audit_outcomes(stack: Stack) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, fields in stack.audit():
        name = f"{fields.get('step')}:{fields.get('outcome')}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def run_size(
    gateways: int,
    sessions: int,
    interval: float,
    intervals: int,
    work: Path,
    *,
    layout: Layout = "up",
    simproc: bool = False,
    zombie_share: float = 0.01,
    extra_settings: dict[str, str] | None = None,
) -> dict[str, Any]:
    sim: RecordingSimulator | SimProcess
    if simproc:
        sim = SimProcess(gateways, sessions, zombie_share)
    else:
        sim = RecordingSimulator()
        populate_bulk(sim, gateways, sessions, zombie_share)
    settings = {"SUPERVISOR_BEAT_MAX_LOOP_INTERVAL_S": "1"} if interval < 5 else {}
    settings.update(extra_settings or {})
    start_timeout = max(120.0, gateways / 20)  # beat creates ~50 entries a second, loaded
    with running_stack(
        sim, work, defaults=f'scan_interval = "{interval:g}s"', settings=settings,
        layout=layout, start_timeout=start_timeout,
    ) as stack:  # fmt: skip
        created = beat_entries(stack.beat_log)
        meter = stack.meter()
        sim_cpu0 = cpu_seconds(sim.pid) if isinstance(sim, SimProcess) and sim.pid else 0.0
        meter.sample()
        stats0 = stack.redis_info("stats")
        t0 = time.time()
        window = interval * intervals
        per_interval: list[dict[str, float]] = []
        rss_peak = pss_peak = beat_rss_peak = 0
        rss_by_name: dict[str, int] = {}
        depth: dict[str, list[int]] = {SCAN_QUEUE: [], ACT_QUEUE: [], PAGE_QUEUE: []}
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
            for name, value in stack.worker_rss_by_name().items():
                rss_by_name[name] = max(rss_by_name.get(name, 0), value)
            with stack.client.pipeline() as pipe:
                for queue in depth:
                    pipe.llen(queue)
                for queue, n in zip(depth, pipe.execute(), strict=True):
                    depth[queue].append(int(n))
            if time.time() >= next_boundary - 0.05:
                per_interval.append(meter.used())
                next_boundary += interval
        meter.sample()
        t1 = time.time()
        used = meter.used()
        sim_cpu = (
            cpu_seconds(sim.pid) - sim_cpu0 if isinstance(sim, SimProcess) and sim.pid else None
        )
        rss_end = stack.worker_rss()
        worker_procs = len(stack.worker_pids())
        worker_layout = {name: len(group_pids(pgid)) for name, pgid in stack.worker_pgids.items()}
        memory = stack.redis_info("memory")
        stats1 = stack.redis_info("stats")
        outcomes = audit_outcomes(stack)
        keys = int(stack.client.dbsize())
        worker_logs, beat_log, probe_dir = stack.worker_logs, stack.beat_log, stack.probe_dir
    # processes are stopped: read what they left
    sends = beat_sends(beat_log)
    in_window = sum(1 for times in sends.values() for t in times if t0 <= t <= t1)
    lag = lags(sends, sim.connect_times, created, interval)
    lag_by_interval = per_interval_lag(lag.pop("_dues"), lag.pop("_lags"), t0, interval, intervals)
    picked = pickups(read_probes(probe_dir), t0, t1, interval)
    worker_text = "\n".join(p.read_text(errors="replace") for p in worker_logs.values())
    span = t1 - t0
    cpu_total = sum(used.values())
    worker_cpu = sum(v for k, v in used.items() if k.startswith("worker:"))
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
        "beat_cpu_share_of_total": rnd(used["beat"] / cpu_total) if cpu_total else None,
        "beat_cpu_ms_per_scan": rnd(used["beat"] * 1000 / in_window, 2) if in_window else None,
        "worker_cpu_share": rnd(worker_cpu / (span * CORES)),
        "simulator_cpu_s": rnd(sim_cpu, 2),
        "layout": layout,
        "worker_layout": worker_layout,
        "settings": settings,
        "worker_rss_mb_by_consumer": {k: rnd(v / MB, 1) for k, v in rss_by_name.items()},
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
        "zombies": gateways * round(sessions * zombie_share),
        "queue_depth_max": {q: max(v, default=0) for q, v in depth.items()},
        "queue_depth_first_interval_max": {
            q: max(v[: int(interval)], default=0) for q, v in depth.items()
        },
        "healed": outcomes.get("verify:healed", 0),
        "audit": outcomes,
        "worker_errors": sum(
            1 for line in worker_text.splitlines() if "ERROR/" in line or "Traceback" in line
        ),
        "expired_scans": worker_text.count("expired"),
        **lag,
        "lag_s_by_interval": lag_by_interval,
        **picked,
    }


def verdict(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    at = next((r for r in runs if r["gateways"] == TARGETS["gateways"]), None)
    if at is None:
        out["note"] = f"no run at {TARGETS['gateways']} gateways (smoke size)"
    else:
        lag_max = at["lag_s"]["max"] or 0.0
        worst = max(at["cpu_share_per_interval"], default=at["cpu_share"])
        rss = at["worker_rss_mb_peak"]
        out |= {
            "cpu_share": {"max": TARGETS["cpu_share_max"], "value": at["cpu_share"],
                          "met": at["cpu_share"] <= TARGETS["cpu_share_max"]},
            "cpu_share_worst_interval": {"max": TARGETS["cpu_share_max"], "value": worst,
                                         "met": worst <= TARGETS["cpu_share_max"]},
            "lag_s": {"max": TARGETS["lag_s_max"], "value": lag_max,
                      "met": lag_max <= TARGETS["lag_s_max"]},
            "worker_rss_mb": {"max": TARGETS["worker_rss_mb_max"], "value": rss,
                              "met": rss <= TARGETS["worker_rss_mb_max"]},
        }  # fmt: skip
    huge = next((r for r in runs if r["gateways"] == TARGETS["big_gateways"]), None)
    if huge is not None:
        share, p95 = huge["cpu_share"], huge["lag_s"]["p95"] or 0.0
        out |= {
            "cpu_share_5000": {"max": TARGETS["big_cpu_share_max"], "value": share,
                               "met": share <= TARGETS["big_cpu_share_max"]},
            "lag_s_p95_5000": {"max": TARGETS["big_lag_s_p95_max"], "value": p95,
                               "met": p95 <= TARGETS["big_lag_s_p95_max"]},
        }  # fmt: skip
    big = next((r for r in runs if r["gateways"] == TARGETS["pickup_gateways"]), None)
    if big is not None:
        p95 = big["pickup_first_interval_s"]["step"]["p95"]
        if p95 is not None:
            out["step_pickup_s_p95"] = {
                "max": TARGETS["step_pickup_s_p95_max"], "value": p95,
                "met": p95 <= TARGETS["step_pickup_s_p95_max"],
            }  # fmt: skip
    return out


def run(
    size: Size,
    out: Path,
    gateways: tuple[int, ...] | None = None,
    intervals: int | None = None,
    *,
    layout: Layout = "up",
    simproc: bool = False,
    zombie_share: float = 0.01,
    extra_settings: dict[str, str] | None = None,
    tag: str | None = None,
) -> dict[str, Any]:
    counts, sessions, interval, default_intervals = PLANS[size]
    counts = gateways or counts
    intervals = intervals or default_intervals
    runs = []
    for g in counts:
        say(f"fleet_scale: {g} gateways x {sessions} sessions, every {interval:g}s, "
            f"{intervals} interval(s), layout {layout}, load {os.getloadavg()}")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
            got = run_size(
                g, sessions, interval, intervals, Path(tmp), layout=layout, simproc=simproc,
                zombie_share=zombie_share, extra_settings=extra_settings,
            )  # fmt: skip
        got["loadavg_after"] = list(os.getloadavg())
        step = got["pickup_first_interval_s"]["step"]
        say(
            f"  cpu {got['cpu_share']:.1%} of {CORES} cores (per interval "
            f"{got['cpu_share_per_interval']}, beat {got['cpu_s']['beat']} s), worker rss "
            f"{got['worker_rss_mb_peak']} MB, redis {got['redis_used_memory_mb']} MB, lag p95 "
            f"{got['lag_s']['p95']} s max {got['lag_s']['max']} s, step pick-up (first interval) "
            f"p95 {step['p95']} s max {step['max']} s, healed {got['healed']}/{got['zombies']}, "
            f"load {got['loadavg_after']}"
        )
        runs.append(got)
    headline = next((r for r in runs if r["gateways"] == TARGETS["gateways"]), runs[-1])
    doc = {
        "method": f"real workers (layout {layout}: {headline['worker_layout']}, -E) + beat + "
        "embedded valkey as subprocesses; simulator (2026.9.6) "
        + ("in its own process (bench.simproc)" if simproc else "in the benchmark process")
        + f", not counted; CPU from /proc over the window; {intervals} scan interval(s) "
        "measured from the moment beat has every entry",
        "command": "python -m bench.fleet_scale " + " ".join(sys.argv[1:]),
        "figures": {
            "gateways": headline["gateways"],
            "cpu_share": headline["cpu_share"],
            "cpu_share_worst_interval": max(
                headline["cpu_share_per_interval"], default=headline["cpu_share"]
            ),
            "beat_cpu_share_of_total": headline["beat_cpu_share_of_total"],
            "worker_rss_mb_peak": headline["worker_rss_mb_peak"],
            "worker_pss_mb_peak": headline["worker_pss_mb_peak"],
            "redis_used_memory_mb": headline["redis_used_memory_mb"],
            "lag_s_p95": headline["lag_s"]["p95"],
            "lag_s_max": headline["lag_s"]["max"],
            "step_pickup_s_p95": headline["pickup_first_interval_s"]["step"]["p95"],
            "redis_commands_per_scan": headline["redis_commands_per_scan"],
            "healed": headline["healed"],
            "zombies": headline["zombies"],
        },
        "targets": verdict(runs),
        "growth": runs,
    }
    # a variant (--tag) goes beside the headline result: fleet_scale-<size>-<tag>.json
    write_result(out, "fleet_scale", size, doc, suffix=tag)
    return doc


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__ or "")
    p.add_argument("--gateways", type=int, nargs="+", help="gateway counts (default by size)")
    p.add_argument("--intervals", type=int, help="scan intervals to measure (default by size)")
    p.add_argument("--layout", choices=LAYOUTS, default="up", help="worker layout (default up)")
    p.add_argument("--simproc", action="store_true", help="simulator in its own process")
    p.add_argument("--zombie-share", type=float, default=0.01)
    p.add_argument("--tag", help="suffix of the result file, for a variant run")
    p.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                   help="a SUPERVISOR_* setting for every process")  # fmt: skip
    args = p.parse_args(argv)
    gateways = tuple(args.gateways) if args.gateways else None
    extra = dict(item.split("=", 1) for item in args.set)
    doc = run(
        args.size, args.out, gateways, args.intervals, layout=args.layout,
        simproc=args.simproc, zombie_share=args.zombie_share, extra_settings=extra, tag=args.tag,
    )  # fmt: skip
    print(json.dumps(doc["figures"]))


if __name__ == "__main__":
    main()

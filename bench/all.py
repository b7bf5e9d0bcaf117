"""Every benchmark, one after the other, and a summary of their figures and targets.

    python -m bench.all --size smoke    # seconds; what CI runs (tests/test_bench_smoke.py)
    python -m bench.all --size full     # by hand, ~25 minutes; refreshes BENCHMARKS.md's table

Writes `<out>/<benchmark>-<size>.json` for each and `<out>/all-<size>.json` (figures + targets).
A full run into the default directory also regenerates the table in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import fleet_scale, latency, redis_cost, scan_overhead, startup
from bench.common import RESULTS, Size, parser, rnd, say, write_result
from bench.report import update

BENCHMARKS: dict[str, Callable[[Size, Path], dict[str, Any]]] = {
    "startup": startup.run,
    "scan_overhead": scan_overhead.run,
    "redis_cost": redis_cost.run,
    "latency": latency.run,
    "fleet_scale": fleet_scale.run,
}


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__ or "")
    p.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    args = p.parse_args(argv)
    summary: dict[str, Any] = {}
    for name in args.only or BENCHMARKS:
        started = time.monotonic()
        doc = BENCHMARKS[name](args.size, args.out)
        summary[name] = {
            "figures": doc["figures"],
            "targets": doc["targets"],
            "seconds": rnd(time.monotonic() - started, 1),
        }
        say(f"{name}: done in {summary[name]['seconds']} s")
    write_result(args.out, "all", args.size, {"benchmarks": summary})
    if args.size == "full" and args.out.resolve() == RESULTS.resolve() and not args.only:
        update(Path(RESULTS.parent.parent / "BENCHMARKS.md"), args.out, "full")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

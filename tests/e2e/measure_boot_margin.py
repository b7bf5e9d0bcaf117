"""How far apart are a killed run's `startedAt` and the boot derived from the new process's
uptime? (issue 12 item 7: sets how small `boot_margin` can be.)

    .venv/bin/python -m tests.e2e.measure_boot_margin [--runs 20] [--version 2026.3.24]

One real gateway; each run sends a message that hangs on the fake model, SIGKILLs the gateway
0.5-5 s after the send (or, `--after started`, after the run's start), starts it again and
reads the row and the hello. Printed per run and as a distribution, all in ms of the one host
clock (the gateway's clock and ours are the same here):

* `gap` = derived boot - the run's `startedAt`: what `boot_margin` is compared with (a run is
  taken for a restart zombie only when it started more than `boot_margin` before the boot);
* `boot_after_kill` = derived boot - the moment we sent SIGKILL: negative would mean the
  uptime puts the boot before the crash (the derivation's own error);
* `spawn_to_boot` = derived boot - the moment the new process was spawned.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from tests.e2e.fake_model import FakeModelServer
from tests.e2e.install import OpenClawInstall
from tests.e2e.recipes import RealGateway
from tests.e2e.rows import running


def measure(version: str, runs: int, seed: int, after: str) -> list[dict[str, float]]:
    rng = random.Random(seed)
    install = OpenClawInstall.locate((version,))
    results: list[dict[str, float]] = []
    with FakeModelServer() as model:
        root = Path(tempfile.mkdtemp(prefix=f"boot-margin-{version}-"))
        gateway = RealGateway(install, version, root, model, max_concurrent=max(8, runs + 4))
        with gateway:
            for i in range(runs):
                sent = time.time() * 1000
                (key,) = gateway.make_hung(f"m-{i:03d}")
                started = float(gateway.rows()[key]["startedAt"])
                wait = rng.uniform(0.5, 5.0)
                origin = sent if after == "sent" else started
                time.sleep(max(0.0, origin / 1000 + wait - time.time()))
                killed = time.time() * 1000
                gateway.kill()
                spawned = time.time() * 1000
                gateway.start()
                boot = gateway.boot_time_ms()
                row = gateway.rows()[key]
                result = {
                    "run": i,
                    "kill_after_send_s": round((killed - sent) / 1000, 2),
                    "kill_after_start_s": round((killed - started) / 1000, 2),
                    "started_after_send": round(started - sent),
                    "gap": round(boot - started),
                    "boot_after_kill": round(boot - killed),
                    "spawn_to_boot": round(boot - spawned),
                    "still_running": float(running(row) and row.get("startedAt") == started),
                }
                results.append(result)
                print(json.dumps(result), flush=True)
    return results


def summary(results: list[dict[str, float]], field: str) -> str:
    values = sorted(r[field] for r in results)
    quart = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return (
        f"{field}: min {values[0]:g} p25 {quart[0]:g} median {quart[1]:g} p75 {quart[2]:g} "
        f"max {values[-1]:g} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="2026.3.24")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--after",
        choices=("sent", "started"),
        default="sent",
        help="kill 0.5-5 s after the send (a run may start late under load) or after its start",
    )
    args = parser.parse_args()
    results = measure(args.version, args.runs, args.seed, args.after)
    for field in ("gap", "boot_after_kill", "spawn_to_boot", "started_after_send"):
        print(summary(results, field))
    print(f"rows still running after the restart: {sum(r['still_running'] for r in results):g}")
    under = [r for r in results if r["gap"] < 5000]
    print(f"runs with gap < 5 s (taken for live by the default boot_margin): {len(under)}")


if __name__ == "__main__":
    main()

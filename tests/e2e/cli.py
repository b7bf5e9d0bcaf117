"""The supervisor's real CLI (`python -m supervisor`) against real gateways."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.common import REPO, HarnessError
from tests.e2e.recipes import RealGateway


def write_fleet(
    directory: Path,
    gateways: Iterable[RealGateway],
    *,
    defaults: Mapping[str, str] | None = None,
) -> Path:
    """A fleet file (one token file per gateway, mode 0600) for these gateways."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["[defaults]", *(f'{k} = "{v}"' for k, v in (defaults or {}).items()), ""]
    for gw in gateways:
        token_file = directory / f"{gw.name}.token"
        token_file.write_text(gw.token + "\n")
        token_file.chmod(0o600)
        lines += [
            "[[gateways]]",
            f'name = "{gw.name}"',
            f'url = "{gw.url}"',
            f'token_file = "{token_file.name}"',
            "",
        ]
    path = directory / "fleet.toml"
    path.write_text("\n".join(lines))
    return path


@dataclass(frozen=True)
class CliRun:
    """One run of `python -m supervisor ...`."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise HarnessError(
                f"{' '.join(self.args)}: stdout is not JSON ({exc}); exit {self.returncode}; "
                f"stderr: {self.stderr[-2000:]}"
            ) from None


def run_supervisor(
    *args: str, state_dir: Path, env: Mapping[str, str] | None = None, timeout: float = 120.0
) -> CliRun:
    """Run the real CLI (`python -m supervisor ARGS`) as a user would, with its own state dir."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    full_env["SUPERVISOR_STATE_DIR"] = str(state_dir)
    full_env.update(env or {})
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )
    return CliRun(
        args=args,
        returncode=proc.returncode,
        stdout=proc.stdout,
        stderr=proc.stderr,
        seconds=round(time.monotonic() - began, 2),
    )

"""A simulated fleet in its own process, so its CPU never mixes with the client's being measured.

`python -m bench.simproc --gateways G --sessions S --dir D` serves G gateways of S sessions
each (1% zombies, 10% live, the rest idle: `populate_bulk`), writes `D/fleet.toml`, prints one
JSON line `{"port": ..., "fleet": ...}` and serves until its standard input closes. With
`--record FILE` it then writes the wall-clock time of every connection, per gateway, to FILE
(JSON), which is what `fleet_scale` measures scan lag with (`SimProcess`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from bench.common import ROOT, RecordingSimulator
from supervisor.simulator import Version
from supervisor.simulator.demo import populate_bulk, write_fleet


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gateways", type=int, required=True)
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--zombie-share", type=float, default=0.01)
    p.add_argument("--version", default=Version.V2026_9_6.value)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--extra", default="", help="more [defaults] lines for the fleet file")
    p.add_argument("--stale-after", default="20m")
    p.add_argument("--record", type=Path, help="write connection times here (JSON) at the end")
    args = p.parse_args(argv)
    server = RecordingSimulator()
    populate_bulk(
        server, args.gateways, args.sessions, args.zombie_share, version=Version(args.version)
    )
    with server.running():
        fleet = write_fleet(server, args.dir, extra=args.extra, stale_after=args.stale_after)
        print(json.dumps({"port": server.port, "fleet": str(fleet)}), flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin (or dies)
    if args.record is not None:
        args.record.write_text(json.dumps(server.connect_times))


class SimProcess:
    """`bench.stack`'s simulated fleet in a process of its own (`Simulated`): its CPU is its
    own (`pid`), and its connection times are read back when it stops."""

    def __init__(self, gateways: int, sessions: int, zombie_share: float = 0.01) -> None:
        self.gateways, self.sessions, self.zombie_share = gateways, sessions, zombie_share
        self.connect_times: dict[str, list[float]] = {}
        self.pid: int | None = None

    def gateway_names(self) -> list[str]:
        return [f"sim-{g:05d}" for g in range(self.gateways)]  # populate_bulk's names

    @contextlib.contextmanager
    def serve(self, work: Path, defaults: str, stale_after: str) -> Iterator[Path]:
        record = work / "connects.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.simproc", "--gateways", str(self.gateways),
             "--sessions", str(self.sessions), "--zombie-share", str(self.zombie_share),
             "--dir", str(work), "--extra", defaults, "--stale-after", stale_after,
             "--record", str(record)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
        self.pid = proc.pid
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("bench.simproc exited before serving")
            yield Path(json.loads(line)["fleet"])
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if record.is_file():
                self.connect_times = json.loads(record.read_text())


if __name__ == "__main__":
    main()

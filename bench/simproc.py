"""A simulated fleet in its own process, so its CPU never mixes with the client's being measured.

`python -m bench.simproc --gateways G --sessions S --dir D` serves G gateways of S sessions
each (1% zombies, 10% live, the rest idle: `populate_bulk`), writes `D/fleet.toml`, prints one
JSON line `{"port": ..., "fleet": ...}` and serves until its standard input closes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from supervisor.simulator import SimulatorServer, Version
from supervisor.simulator.demo import populate_bulk, write_fleet


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gateways", type=int, required=True)
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--zombie-share", type=float, default=0.01)
    p.add_argument("--version", default=Version.V2026_9_6.value)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--extra", default="", help="more [defaults] lines for the fleet file")
    args = p.parse_args(argv)
    server = SimulatorServer()
    populate_bulk(
        server, args.gateways, args.sessions, args.zombie_share, version=Version(args.version)
    )
    with server.running():
        fleet = write_fleet(server, args.dir, extra=args.extra)
        print(json.dumps({"port": server.port, "fleet": str(fleet)}), flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin (or dies)


if __name__ == "__main__":
    main()

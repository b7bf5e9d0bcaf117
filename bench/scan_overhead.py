"""Scan overhead: the supervisor's scan path against a minimal raw WebSocket loop, same fleet.

Both sides scan the same simulated gateways (2026.9.6, served by another process), one after
the other, in alternating rounds:

* raw: `websockets.connect`, answer the challenge with the token and a device proof, send
  `sessions.list`, `json.loads` the answer. The least any scanner must do.
* supervisor: `supervisor.scan.look` (what the worker's scan task runs): `GatewayClient`
  connect and scope check, `list_sessions` (typed rows) and `classify_rows`, plus its report.

Figure: sessions classified per second by each, and their ratio (target >= 0.9), at three
session counts per gateway. The client's own CPU per session is given too (the simulator runs in
its own process, so this process's CPU time is the client's alone).

    python -m bench.scan_overhead [--size smoke|full] [--out DIR]
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import websockets

from bench.common import ROOT, Size, median, parser, rnd, say, write_result
from supervisor.fleet import GatewaySpec, load_fleet
from supervisor.gateway.client import LIST_PAGE_SIZE, MAX_PROTOCOL, MIN_PROTOCOL, GatewayClient
from supervisor.gateway.identity import DeviceIdentity, load_or_create_identity
from supervisor.gateway.models import ALL_SCOPES, READ_SCOPE
from supervisor.scan import look, scan_with

TARGET_RATIO = 0.9
#: size -> (gateways, sessions per gateway at each growth step, rounds)
PLANS: dict[Size, tuple[int, tuple[int, ...], int]] = {
    "smoke": (2, (10, 50, 100), 1),
    "full": (20, (10, 100, 1000), 9),
}
HEADLINE_SESSIONS = {"smoke": 100, "full": 100}


async def raw_scan(spec: GatewaySpec, identity: DeviceIdentity) -> int:
    """connect + challenge + device proof + sessions.list + json.loads; the rows seen."""
    token = spec.token.get_secret_value()
    async with websockets.connect(
        spec.url, max_size=spec.policy.max_frame_bytes, compression=None, proxy=None
    ) as ws:
        challenge = json.loads(await ws.recv())
        nonce = challenge["payload"]["nonce"]
        params = {
            "minProtocol": MIN_PROTOCOL,
            "maxProtocol": MAX_PROTOCOL,
            "client": {"id": spec.client_id, "version": "bench", "platform": "linux",
                       "mode": spec.client_mode},
            "role": "operator",
            "scopes": list(ALL_SCOPES),
            "auth": {"token": token},
            "device": identity.proof(
                client_id=spec.client_id, client_mode=spec.client_mode, role="operator",
                scopes=ALL_SCOPES, token=token, nonce=nonce, signed_at_ms=int(time.time() * 1000),
            ),
        }  # fmt: skip
        await ws.send(
            json.dumps({"type": "req", "id": "c1", "method": "connect", "params": params})
        )
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "res" and frame.get("id") == "c1":
                break
        if not frame.get("ok"):
            raise RuntimeError(f"raw connect refused: {frame.get('error')}")
        rows, params, n = 0, {}, 1
        while True:  # page as the client does (2026.9.6 answers 100 rows a call)
            n += 1
            request = {"type": "req", "id": f"r{n}", "method": "sessions.list", "params": params}
            await ws.send(json.dumps(request))
            while True:
                frame = json.loads(await ws.recv())
                if frame.get("type") == "res" and frame.get("id") == f"r{n}":
                    break
            payload = frame["payload"]
            rows += len(payload["sessions"])
            if not payload.get("hasMore"):
                return rows
            params = {"limit": LIST_PAGE_SIZE, "offset": payload["nextOffset"]}


async def supervisor_scan(spec: GatewaySpec, identity: DeviceIdentity) -> int:
    """`supervisor.scan.look`, as the scan task runs it; the sessions classified."""
    report, scan = await look(spec, identity)
    if scan is None:
        raise RuntimeError(f"supervisor scan failed: {report.error}")
    return len(scan.verdicts)


async def client_scan(spec: GatewaySpec, identity: DeviceIdentity) -> int:
    """`GatewayClient` connect + scope check + `scan_with` (list_sessions + classify_rows)."""
    async with GatewayClient(spec, identity) as client:
        await client.verify_scopes((READ_SCOPE,))
        scan = await scan_with(client)
    return len(scan.verdicts)


Scan = Callable[[GatewaySpec, DeviceIdentity], Awaitable[int]]


async def one_pass(
    scan: Scan, specs: list[GatewaySpec], identity: DeviceIdentity
) -> dict[str, float]:
    """Scan every gateway once, one after the other: sessions, wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    sessions = 0
    for spec in specs:
        sessions += await scan(spec, identity)
    return {
        "sessions": sessions,
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
    }


async def measure(
    specs: list[GatewaySpec], identity: DeviceIdentity, rounds: int
) -> dict[str, Any]:
    sides: dict[str, Scan] = {"raw": raw_scan, "scan_with": client_scan, "look": supervisor_scan}
    for scan in sides.values():  # warm up: imports, first connections
        await one_pass(scan, specs[:2], identity)
    passes: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    for r in range(rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            passes[name].append(await one_pass(sides[name], specs, identity))
    out: dict[str, Any] = {"rounds": rounds}
    for name, got in passes.items():
        rates = [p["sessions"] / p["wall_s"] for p in got]
        cpu = median([p["cpu_s"] / p["sessions"] * 1e6 for p in got])
        side: dict[str, Any] = {
            "sessions_per_s": rnd(median(rates), 1),
            "client_cpu_us_per_session": rnd(cpu, 2),
        }
        if name != "raw":
            # each round's rate over the raw rate of the same round (neighbours in time)
            ratios = [
                (s["sessions"] / s["wall_s"]) / (r["sessions"] / r["wall_s"])
                for r, s in zip(passes["raw"], got, strict=True)
            ]
            side["ratio"] = rnd(median(ratios))
            side["ratio_per_round"] = [rnd(x) for x in ratios]
            raw_cpu = median([p["cpu_s"] / p["sessions"] * 1e6 for p in passes["raw"]])
            side["cpu_ratio"] = rnd((raw_cpu or 0) / (cpu or 1))
        out[name] = side
    return out


def run_size(gateways: int, sessions: int, rounds: int, work: Path) -> dict[str, Any]:
    directory = work / f"s{sessions}"
    sim = subprocess.Popen(
        [sys.executable, "-m", "bench.simproc", "--gateways", str(gateways),
         "--sessions", str(sessions), "--dir", str(directory)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        started = json.loads(sim.stdout.readline())
        specs = list(load_fleet(started["fleet"]).gateways)
        identity = load_or_create_identity(work / "state")
        result = asyncio.run(measure(specs, identity, rounds))
    finally:
        if sim.stdin is not None:
            sim.stdin.close()
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
    return {"gateways": gateways, "sessions_per_gateway": sessions, **result}


def run(size: Size, out: Path) -> dict[str, Any]:
    gateways, steps, rounds = PLANS[size]
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        for sessions in steps:
            say(f"scan_overhead: {gateways} gateways x {sessions} sessions, {rounds} round(s)")
            got = run_size(gateways, sessions, rounds, Path(tmp))
            say(
                f"  raw {got['raw']['sessions_per_s']}/s, scan_with "
                f"{got['scan_with']['sessions_per_s']}/s (ratio {got['scan_with']['ratio']}), "
                f"look {got['look']['sessions_per_s']}/s (ratio {got['look']['ratio']})"
            )
            runs.append(got)
    headline = next(r for r in runs if r["sessions_per_gateway"] == HEADLINE_SESSIONS[size])
    ratio = headline["scan_with"]["ratio"]
    doc = {
        "method": "sequential scans of every gateway by each side in turn (order alternating per "
        "round); ratio = median over rounds of side rate / raw rate of the same round (wall "
        "clock, simulator time included, as the raw loop waits for it too); simulator "
        "(2026.9.6, 100 rows a page) in its own process. scan_with = GatewayClient connect + "
        "verify_scopes + list_sessions + classify_rows; look = scan_with + the check report",
        "figures": {
            "ratio": ratio,
            "ratio_look": headline["look"]["ratio"],
            "raw_sessions_per_s": headline["raw"]["sessions_per_s"],
            "supervisor_sessions_per_s": headline["scan_with"]["sessions_per_s"],
            "look_sessions_per_s": headline["look"]["sessions_per_s"],
            "cpu_ratio": headline["scan_with"]["cpu_ratio"],
            "raw_cpu_us_per_session": headline["raw"]["client_cpu_us_per_session"],
            "supervisor_cpu_us_per_session": headline["scan_with"]["client_cpu_us_per_session"],
        },
        "targets": {"ratio": {"min": TARGET_RATIO, "value": ratio, "met": ratio >= TARGET_RATIO}},
        "growth": runs,
    }
    write_result(out, "scan_overhead", size, doc)
    return doc


def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__ or "").parse_args(argv)
    doc = run(args.size, args.out)
    print(json.dumps(doc["figures"]))


if __name__ == "__main__":
    main()

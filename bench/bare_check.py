"""The least a fleet check must do, as its own command: the floor `check --json` is held to.

    python -m bench.bare_check FLEET [--concurrency 32] [--state DIR]

For every gateway of a fleet file (at most `--concurrency` at once, as `check` does): connect,
answer the challenge with the token and a device proof, page through `sessions.list` and
`json.loads` every frame; print one JSON line with the rows seen. No typing, no verdicts, no
report: what is left of `check` once everything the supervisor adds is taken away. It imports
nothing but asyncio, websockets and the device key (cryptography), so its start-up is the floor
too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import tomllib
from pathlib import Path
from typing import Any

import websockets

from supervisor.gateway.identity import DeviceIdentity, load_or_create_identity

#: what `GatewayClient` sends (kept equal by hand: importing the client would cost its imports)
MIN_PROTOCOL, MAX_PROTOCOL, PAGE = 3, 4, 200
SCOPES = ("operator.read", "operator.write", "operator.admin")
CLIENT_ID, CLIENT_MODE = "gateway-client", "backend"


def gateways(fleet: Path) -> list[tuple[str, str]]:
    """(url, token) of every gateway in the fleet file."""
    doc = tomllib.loads(fleet.read_text())
    out = []
    for g in doc.get("gateways", []):
        if "token_env" in g:
            token = os.environ[g["token_env"]]
        else:
            token = (fleet.parent / g["token_file"]).read_text()
        out.append((g["url"], token.strip()))
    return out


async def request(ws: Any, rid: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "req", "id": rid, "method": method, "params": params}))
    while True:
        frame: dict[str, Any] = json.loads(await ws.recv())
        if frame.get("type") == "res" and frame.get("id") == rid:
            return frame


async def scan(url: str, token: str, identity: DeviceIdentity) -> int:
    async with websockets.connect(url, compression=None, proxy=None, max_size=None) as ws:
        nonce = json.loads(await ws.recv())["payload"]["nonce"]
        params = {
            "minProtocol": MIN_PROTOCOL, "maxProtocol": MAX_PROTOCOL,
            "client": {"id": CLIENT_ID, "version": "bare", "platform": "linux",
                       "mode": CLIENT_MODE},
            "role": "operator", "scopes": list(SCOPES), "auth": {"token": token},
            "device": identity.proof(
                client_id=CLIENT_ID, client_mode=CLIENT_MODE, role="operator", scopes=SCOPES,
                token=token, nonce=nonce, signed_at_ms=int(time.time() * 1000),
            ),
        }  # fmt: skip
        hello = await request(ws, "c1", "connect", params)
        if not hello.get("ok"):
            raise RuntimeError(f"{url}: connect refused")
        rows, n = 0, 1
        page_params: dict[str, Any] = {}
        while True:
            n += 1
            payload = (await request(ws, f"r{n}", "sessions.list", page_params))["payload"]
            rows += len(payload["sessions"])
            if not payload.get("hasMore"):
                return rows
            page_params = {"limit": PAGE, "offset": payload["nextOffset"]}


async def scan_all(targets: list[tuple[str, str]], identity: DeviceIdentity, limit: int) -> int:
    gate = asyncio.Semaphore(limit)

    async def one(url: str, token: str) -> int:
        async with gate:
            return await scan(url, token, identity)

    return sum(await asyncio.gather(*(one(u, t) for u, t in targets)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("fleet", type=Path)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--state", type=Path, default=Path(os.environ.get("SUPERVISOR_STATE_DIR", ".")))
    args = p.parse_args(argv)
    identity = load_or_create_identity(args.state)
    targets = gateways(args.fleet)
    rows = asyncio.run(scan_all(targets, identity, args.concurrency))
    print(json.dumps({"gateways": len(targets), "rows": rows}))


if __name__ == "__main__":
    main()

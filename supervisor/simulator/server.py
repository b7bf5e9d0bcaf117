"""The simulator's WebSocket server: many gateways on one loopback port, routed by URL path.

`ws://127.0.0.1:PORT/<gateway-name>` reaches one simulated gateway (a real gateway ignores the
path, so fleet files written for the simulator look like real ones).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from supervisor.simulator.gateway import FaultMode, SimError, SimGateway

UI_CLIENTS = {"openclaw-control-ui", "webchat-ui"}


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_device(
    device: object, *, client: dict[str, Any], role: str, scopes: list[str], token: str, nonce: str
) -> str | None:
    """The device id if the proof is valid (v2 or v3 payload), else None."""
    if not isinstance(device, dict):
        return None
    try:
        raw_key = _b64url_decode(str(device["publicKey"]))
        device_id = str(device["id"])
        if hashlib.sha256(raw_key).hexdigest() != device_id or device.get("nonce") != nonce:
            return None
        base = [
            "v2",
            device_id,
            str(client.get("id")),
            str(client.get("mode")),
            role,
            ",".join(scopes),
            str(device["signedAt"]),
            token,
            nonce,
        ]
        v3 = ["v3", *base[1:], str(client.get("platform", "")), str(client.get("deviceFamily", ""))]
        key = Ed25519PublicKey.from_public_bytes(raw_key)
        signature = _b64url_decode(str(device["signature"]))
        for payload in (base, v3):
            try:
                key.verify(signature, "|".join(payload).encode())
                return device_id
            except InvalidSignature:
                continue
    except (KeyError, ValueError, TypeError):
        return None
    return None


class SimulatorServer:
    """Serves `SimGateway`s. Start with `await start()` or, from sync code, `running()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.gateways: dict[str, SimGateway] = {}
        self._server: Server | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def add(self, gateway: SimGateway) -> SimGateway:
        self.gateways[gateway.name] = gateway
        return gateway

    def url(self, name: str) -> str:
        return f"ws://{self.host}:{self.port}/{name}"

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._server = await serve(
            self._handle, self.host, self.port, max_size=2**24, compression=None, ping_interval=None
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @contextlib.contextmanager
    def running(self) -> Iterator[SimulatorServer]:
        """Run the server on its own event loop in a thread (for sync tests and the CLI)."""
        ready = threading.Event()
        stop: asyncio.Event | None = None

        async def main() -> None:
            nonlocal stop
            stop = asyncio.Event()
            await self.start()
            ready.set()
            await stop.wait()
            await self.stop()

        thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True, name="simulator")
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("simulator did not start")
        try:
            yield self
        finally:
            assert self.loop is not None and stop is not None
            self.loop.call_soon_threadsafe(stop.set)
            thread.join(10)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` on the server's loop thread (safe state changes from other threads)."""
        assert self.loop is not None

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    # -- one connection ------------------------------------------------------------------

    def _route(self, path: str) -> SimGateway | None:
        name = path.strip("/").split("?")[0]
        if not name and len(self.gateways) == 1:
            return next(iter(self.gateways.values()))
        return self.gateways.get(name)

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        gw = self._route(ws.request.path)
        if gw is None:
            await ws.close(1008, "no such gateway")
            return
        gw.connects += 1
        with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
            await self._serve(ws, gw)

    async def _serve(self, ws: ServerConnection, gw: SimGateway) -> None:
        if gw.fault is FaultMode.DROP:
            await ws.close(1011, "dropped")
            return
        if gw.fault is FaultMode.HANG:
            await ws.wait_closed()
            return
        nonce = uuid.uuid4().hex
        await ws.send(
            json.dumps(
                {
                    "type": "event",
                    "event": "connect.challenge",
                    "payload": {"nonce": nonce, "ts": gw.challenge_timestamp()},
                }
            )
        )
        try:
            frame = json.loads(await ws.recv())
        except ValueError:
            await ws.close(1008, "invalid frame")
            return
        if not isinstance(frame, dict) or frame.get("method") != "connect":
            await ws.close(1008, "first request must be connect")
            return
        if gw.fault is FaultMode.OVERLOAD:
            await ws.close(1000)  # measured: closed during connect, no error frame
            return
        request_id = frame.get("id")
        try:
            _protocol, scopes, hello = self._connect(gw, frame.get("params") or {}, nonce)
        except SimError as err:
            await ws.send(
                json.dumps({"type": "res", "id": request_id, "ok": False, "error": err.as_error()})
            )
            await ws.close(1008, err.close_reason or err.code)
            return
        await ws.send(json.dumps({"type": "res", "id": request_id, "ok": True, "payload": hello}))
        # a tick event now and then, as real gateways send unsolicited events
        await ws.send(json.dumps({"type": "event", "event": "tick", "payload": {"ts": 0}}))
        # events are queued and sent ahead of this connection's next answer: a run that starts
        # before the gateway handles our request is announced before that request's answer,
        # as real gateways order them on one socket
        events: list[dict[str, Any]] = []
        subscribed: list[bool] = []

        def listen(frame: dict[str, Any], subscribers_only: bool) -> None:
            if len(events) < 10_000 and (subscribed or not subscribers_only):
                events.append(frame)

        gw.listeners.append(listen)
        try:
            async for raw in ws:
                await self._answer(ws, gw, raw, scopes, events, subscribed)
        finally:
            gw.listeners.remove(listen)

    def _connect(
        self, gw: SimGateway, params: dict[str, Any], nonce: str
    ) -> tuple[int, list[str], dict[str, Any]]:
        client = params.get("client") if isinstance(params.get("client"), dict) else {}
        assert isinstance(client, dict)
        auth = params.get("auth") if isinstance(params.get("auth"), dict) else {}
        assert isinstance(auth, dict)
        token = auth.get("token")
        device = params.get("device")
        if not token and device is None:
            raise SimError("NOT_PAIRED", "device identity required")
        if client.get("id") in UI_CLIENTS and device is None:
            raise SimError("INVALID_REQUEST", "control ui requires device identity")
        if token != gw.token:
            raise SimError(
                "INVALID_REQUEST",
                "unauthorized: gateway token mismatch",
                {"code": "AUTH_TOKEN_MISMATCH"},
            )
        low, high = int(params.get("minProtocol", 0)), int(params.get("maxProtocol", 0))
        protocol = min(high, gw.protocol)
        if protocol < max(low, 3):
            raise SimError(
                "INVALID_REQUEST", "protocol mismatch", {"expectedProtocol": gw.protocol}
            )
        requested = [s for s in params.get("scopes") or [] if isinstance(s, str)]
        role = str(params.get("role", "operator"))
        device_id = (
            verify_device(
                device, client=client, role=role, scopes=requested, token=str(token), nonce=nonce
            )
            if device is not None
            else None
        )
        if device is not None and device_id is None:
            raise SimError(
                "INVALID_REQUEST", "device signature invalid", {"code": "DEVICE_AUTH_INVALID"}
            )
        scopes = gw.granted_scopes(client, requested, device_id is not None, device_id)
        return protocol, scopes, gw.hello(protocol, scopes)

    async def _answer(
        self,
        ws: ServerConnection,
        gw: SimGateway,
        raw: str | bytes,
        scopes: list[str],
        events: list[dict[str, Any]] | None = None,
        subscribed: list[bool] | None = None,
    ) -> None:
        try:
            frame = json.loads(raw)
            request_id, method = frame["id"], str(frame["method"])
            params = frame.get("params") or {}
        except (ValueError, KeyError, TypeError):
            await ws.send(
                json.dumps(
                    {
                        "type": "res",
                        "id": None,
                        "ok": False,
                        "error": {"code": "INVALID_REQUEST", "message": "invalid frame"},
                    }
                )
            )
            return
        if gw.fault is FaultMode.HANG_CALLS:
            return
        if gw.fault is FaultMode.GARBAGE:
            await ws.send("}{ this is not json")
            return
        if gw.fault is FaultMode.OVERSIZED:
            await ws.send(
                json.dumps(
                    {
                        "type": "res",
                        "id": request_id,
                        "ok": True,
                        "payload": {"sessions": [], "pad": "x" * (3 * 2**20)},
                    }
                )
            )
            return
        if gw.delay_s:
            await asyncio.sleep(gw.delay_s)
        try:
            payload = gw.handle(method, params if isinstance(params, dict) else {}, scopes)
            if method == "sessions.subscribe" and subscribed is not None and not subscribed:
                subscribed.append(True)
            reply: dict[str, Any] = {
                "type": "res",
                "id": request_id,
                "ok": True,
                "payload": payload,
            }
        except SimError as err:
            reply = {"type": "res", "id": request_id, "ok": False, "error": err.as_error()}
        while events:
            await ws.send(json.dumps(events.pop(0)))
        await ws.send(json.dumps(reply))

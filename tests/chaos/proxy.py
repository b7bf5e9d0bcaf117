"""A small asyncio TCP proxy in front of gateways, for faults toxiproxy would inject.

There is no toxiproxy server to install here (shared/stack-notes.md), so this is the fault
injector between the supervisor and the simulated gateways. Settings can change while it runs
(from any thread); each applies to connections opened after the change unless noted:

* `delay_s`: every chunk from the gateway to the client waits this long (applies at once, also
  to open connections): slow answers, a slow handshake.
* `drop`: accept, then close at once without connecting upstream.
* `blackhole`: accept and read, never connect upstream nor answer (a hang).
* `methods` counts the requests forwarded, per method.
* `reset_after`: methods (e.g. {"sessions.reset"}) after whose request, once it has been
  forwarded to the gateway, the client's socket is reset (RST) before any answer reaches it:
  the request was sent, its outcome is unknown to the client. `resets` counts them;
  `reset_limit` caps them (None: every such request).

WebSocket frames from a client are masked, so the proxy parses them (RFC 6455 framing, no
extensions: the client turns compression off) to find the method of each request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
from collections.abc import Iterator


class FrameReader:
    """Incremental parser of client-to-server WebSocket frames (after the HTTP upgrade)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.upgraded = False
        self.fragments = bytearray()

    def feed(self, data: bytes) -> list[str]:
        """Text messages completed by `data`."""
        self.buf += data
        out: list[str] = []
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return out
            del self.buf[: end + 4]
            self.upgraded = True
        while True:
            frame = self._one()
            if frame is None:
                return out
            fin, opcode, payload = frame
            if opcode in (0x1, 0x0):
                self.fragments += payload
                if fin:
                    out.append(self.fragments.decode("utf-8", "replace"))
                    self.fragments = bytearray()

    def _one(self) -> tuple[bool, int, bytes] | None:
        b = self.buf
        if len(b) < 2:
            return None
        fin, opcode = bool(b[0] & 0x80), b[0] & 0x0F
        masked, length = bool(b[1] & 0x80), b[1] & 0x7F
        pos = 2
        if length == 126:
            if len(b) < 4:
                return None
            length = struct.unpack(">H", b[2:4])[0]
            pos = 4
        elif length == 127:
            if len(b) < 10:
                return None
            length = struct.unpack(">Q", b[2:10])[0]
            pos = 10
        mask = b""
        if masked:
            if len(b) < pos + 4:
                return None
            mask = bytes(b[pos : pos + 4])
            pos += 4
        if len(b) < pos + length:
            return None
        payload = bytes(b[pos : pos + length])
        if masked:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        del b[: pos + length]
        return fin, opcode, payload


def method_of(text: str) -> str | None:
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame.get("method") if isinstance(frame, dict) else None


class Proxy:
    """Listens on 127.0.0.1 and forwards to (host, port), with the faults above."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.delay_s = 0.0
        self.drop = False
        self.blackhole = False
        self.reset_after: set[str] = set()
        self.reset_limit: int | None = None
        self.resets = 0
        self.reset_methods: list[str] = []
        #: requests forwarded to the gateway, per method
        self.methods: dict[str, int] = {}
        self.connections = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None

    def url(self, name: str) -> str:
        return f"ws://127.0.0.1:{self.port}/{name}"

    def clear(self) -> None:
        with self._lock:
            self.delay_s, self.drop, self.blackhole = 0.0, False, False
            self.reset_after, self.reset_limit = set(), None

    def _take_reset(self, method: str | None) -> bool:
        with self._lock:
            if method is None or method not in self.reset_after:
                return False
            if self.reset_limit is not None and self.resets >= self.reset_limit:
                return False
            self.resets += 1
            self.reset_methods.append(method)
            return True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.drop:
            writer.close()
            return
        if self.blackhole:
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        cut = asyncio.Event()

        async def client_to_gateway() -> None:
            frames = FrameReader()
            try:
                while data := await reader.read(65536):
                    up_writer.write(data)
                    await up_writer.drain()
                    methods = [method_of(t) for t in frames.feed(data)]
                    with self._lock:
                        for m in methods:
                            if m:
                                self.methods[m] = self.methods.get(m, 0) + 1
                    if any(self._take_reset(m) for m in methods):
                        cut.set()  # nothing more reaches the client
                        await asyncio.sleep(0.05)  # the gateway has the request
                        _reset(writer)
                        up_writer.close()
                        return
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    up_writer.close()

        async def gateway_to_client() -> None:
            try:
                while data := await up_reader.read(65536):
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    if cut.is_set():
                        return
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                if not cut.is_set():
                    with contextlib.suppress(Exception):
                        writer.close()

        await asyncio.gather(client_to_gateway(), gateway_to_client())

    @contextlib.contextmanager
    def running(self) -> Iterator[Proxy]:
        ready = threading.Event()
        stop: asyncio.Event | None = None

        async def main() -> None:
            nonlocal stop
            stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            await stop.wait()
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

        thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True, name="proxy")
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("proxy did not start")
        try:
            yield self
        finally:
            assert self._loop is not None and stop is not None
            self._loop.call_soon_threadsafe(stop.set)
            thread.join(5)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashed middlebox or a torn connection does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()

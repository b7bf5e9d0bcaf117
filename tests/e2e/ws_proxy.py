"""A WebSocket proxy on loopback that relays frames both ways and can hold a request back.

Used to put a user's message inside the window between the supervisor's final read and the
gateway handling its mutating request, on a real gateway: the request is held while the message
is sent on another connection and its run has started, then forwarded. Frames are relayed in
order in each direction, so the gateway's events reach the supervisor as they would unproxied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve


class HoldingProxy:
    """Relays to `upstream`; a client request for which `hold(frame)` is true waits for
    `on_hold(frame)` (run in a worker thread) before it is forwarded, once per matching frame."""

    def __init__(
        self,
        upstream: str,
        hold: Callable[[dict[str, Any]], bool],
        on_hold: Callable[[dict[str, Any]], None],
    ) -> None:
        self.upstream = upstream
        self.hold = hold
        self.on_hold = on_hold
        self.held: list[dict[str, Any]] = []
        self._server: Server | None = None
        self._port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port}"

    @contextlib.contextmanager
    def running(self) -> Iterator[HoldingProxy]:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        stop: asyncio.Future[None] | None = None

        async def main() -> None:
            nonlocal stop
            stop = loop.create_future()
            async with serve(self._relay, "127.0.0.1", 0, max_size=None) as server:
                self._server = server
                self._port = next(iter(server.sockets)).getsockname()[1]
                ready.set()
                await stop

        thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
        thread.start()
        ready.wait(10)
        try:
            yield self
        finally:
            if stop is not None:
                loop.call_soon_threadsafe(stop.set_result, None)
            thread.join(10)
            loop.close()

    async def _relay(self, client: ServerConnection) -> None:
        async with websockets.connect(self.upstream, max_size=None) as upstream:

            async def up() -> None:
                async for raw in client:
                    frame = _frame(raw)
                    if frame is not None and self.hold(frame):
                        self.held.append(frame)
                        await asyncio.get_running_loop().run_in_executor(None, self.on_hold, frame)
                    await upstream.send(raw)

            async def down() -> None:
                async for raw in upstream:
                    await client.send(raw)

            tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
            with contextlib.suppress(Exception):
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()


def _frame(raw: str | bytes) -> dict[str, Any] | None:
    try:
        frame = json.loads(raw)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None

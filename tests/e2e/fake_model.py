"""An OpenAI-compatible fake model on loopback that can hang chosen prompts forever."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from tests.e2e.common import HANG_MARKER, HarnessError


@dataclass
class ModelRequest:
    """One request the fake model received."""

    number: int
    path: str
    stream: bool
    #: text of the pending turn: every message after the last assistant message
    prompt: str
    hung: bool
    #: answered | hanging | released | dropped (closed unanswered by `drop_hung`) | abandoned
    #: (the caller went away while it hung)
    state: str
    received_at: float = field(default_factory=time.time)


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return "" if content is None else str(content)


def pending_turn_text(messages: object) -> str:
    """The text of the messages after the last assistant message (the turn being asked)."""
    if not isinstance(messages, list):
        return ""
    last_assistant = max(
        (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"),
        default=-1,
    )
    return "\n".join(
        _text_of(m.get("content"))
        for m in messages[last_assistant + 1 :]
        if isinstance(m, dict) and m.get("role") != "system"
    )


class FakeModelServer:
    """An OpenAI-compatible chat endpoint on loopback that can hang chosen prompts forever."""

    def __init__(
        self,
        *,
        model_id: str = "fake-1",
        reply: str = "ok",
        hang_marker: str = HANG_MARKER,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.model_id = model_id
        self.reply = reply
        self.hang_marker = hang_marker
        #: False: prompts with the marker are answered like any other
        self.hang_enabled = True
        self._address = (host, port)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[ModelRequest] = []
        self._release: dict[int, threading.Event] = {}
        #: numbers of held requests whose connection is to be closed without an answer
        self._drop: set[int] = set()
        #: prompts containing one of these are closed unanswered (`drop_hung`)
        self._dead: set[str] = set()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> Self:
        if self._server is not None:
            return self
        handler = self._handler_class()
        server = ThreadingHTTPServer(self._address, handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; held requests are dropped without an answer."""
        self._closing.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise HarnessError("the fake model server is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What a provider's `baseUrl` should be."""
        return f"http://127.0.0.1:{self.port}/v1"

    # what happened

    def requests(self) -> list[ModelRequest]:
        with self._lock:
            return list(self._requests)

    def hanging(self) -> list[ModelRequest]:
        """Requests held open right now (their callers still connected)."""
        with self._lock:
            return [r for r in self._requests if r.state == "hanging"]

    def wait_for(
        self, predicate: Callable[[list[ModelRequest]], bool], *, timeout: float, what: str
    ) -> list[ModelRequest]:
        """Wait until `predicate(all requests)` holds; returns the requests."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(list(self._requests)):
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(r.number, r.state, r.prompt[-80:]) for r in self._requests]
                    raise HarnessError(f"fake model: timed out waiting for {what}; saw {seen}")
                self._changed.wait(min(left, 0.2))
            return list(self._requests)

    def release_hung(self) -> int:
        """Answer every held request now; returns how many were released."""
        with self._lock:
            events = [
                self._release[r.number]
                for r in self._requests
                if r.state == "hanging" and r.number not in self._drop
            ]
        for event in events:
            event.set()
        return len(events)

    def drop_hung(self, text: str) -> int:
        """From now on, close every request whose prompt contains `text` without an answer (a
        model provider that crashed, or a network reset mid-call): the held ones now, and the
        retries the gateway makes. Returns how many held requests were dropped; they are
        `dropped` within a quarter of a second."""
        with self._changed:
            self._dead.add(text)
            chosen = [r for r in self._requests if r.state == "hanging" and text in r.prompt]
            self._drop.update(r.number for r in chosen)
            events = [self._release[r.number] for r in chosen]
        for event in events:
            event.set()
        return len(chosen)

    # serving

    def _record(self, path: str, body: dict[str, Any]) -> ModelRequest:
        prompt = pending_turn_text(body.get("messages"))
        with self._changed:
            dead = any(text in prompt for text in self._dead)
            hung = dead or (self.hang_enabled and self.hang_marker in prompt)
            request = ModelRequest(
                number=len(self._requests) + 1,
                path=path,
                stream=bool(body.get("stream")),
                prompt=prompt,
                hung=hung,
                state="hanging" if hung else "answered",
            )
            self._requests.append(request)
            if hung:
                self._release[request.number] = threading.Event()
            if dead:
                self._drop.add(request.number)
                self._release[request.number].set()
            self._changed.notify_all()
        return request

    def _set_state(self, request: ModelRequest, state: str) -> None:
        with self._changed:
            request.state = state
            self._changed.notify_all()

    def _hold(self, request: ModelRequest, sock: socket.socket) -> bool:
        """Hold a hung request; True once released, False if the caller or server went away."""
        event = self._release[request.number]
        while not event.wait(0.25):
            if self._closing.is_set() or _peer_closed(sock):
                self._set_state(request, "abandoned")
                return False
        if request.number in self._drop:
            self._set_state(request, "dropped")
            return False
        self._set_state(request, "released")
        return True

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, status: int, doc: object) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json(
                        200,
                        {
                            "object": "list",
                            "data": [{"id": fake.model_id, "object": "model", "owned_by": "e2e"}],
                        },
                    )
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._json(400, {"error": {"message": "body is not JSON"}})
                    return
                if not self.path.rstrip("/").endswith("/chat/completions") or not isinstance(
                    body, dict
                ):
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                request = fake._record(self.path, body)
                if request.hung and not fake._hold(request, self.connection):
                    self.close_connection = True
                    return
                with contextlib.suppress(OSError):
                    self._answer(body, request.stream)

            def _answer(self, body: dict[str, Any], stream: bool) -> None:
                model = body.get("model") or fake.model_id
                created = int(time.time())
                rid = f"chatcmpl-e2e-{uuid.uuid4().hex[:12]}"
                usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
                if not stream:
                    self._json(
                        200,
                        {
                            "id": rid,
                            "object": "chat.completion",
                            "created": created,
                            "model": model,
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": fake.reply},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": usage,
                        },
                    )
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                base = {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                }
                chunks: list[dict[str, Any]] = [
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"role": "assistant", "content": ""},
                                "finish_reason": None,
                            }
                        ],
                    },
                    {
                        **base,
                        "choices": [
                            {"index": 0, "delta": {"content": fake.reply}, "finish_reason": None}
                        ],
                    },
                    {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                    {**base, "choices": [], "usage": usage},
                ]
                for chunk in chunks:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler


def _peer_closed(sock: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True

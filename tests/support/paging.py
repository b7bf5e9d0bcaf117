"""Paging test helpers: a real loopback HTTP server that records requests and answers from a
script, the secrets' canaries, a config with every provider kind, and events as the engine
reports them. The fixtures built on them (`http`, `full_config`) are in `tests.support.fixtures`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from supervisor.escalation.config import PagingConfig, parse_paging
from supervisor.escalation.models import IncidentEvent

#: canaries: tests assert none of them ever shows up in errors, reprs, results or logs
PD_KEY = "canary-pd-routing-key-5e1b"
SLACK_SECRET = "canary-slack-path-9c2d"
HMAC_SECRET = "canary-hmac-secret-0a7f"
AUTH_SECRET = "canary-auth-header-44c1"
CANARIES = (PD_KEY, SLACK_SECRET, HMAC_SECRET, AUTH_SECRET)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 202
    body: bytes = b'{"status":"success","message":"Event processed"}'
    headers: dict[str, str] = field(default_factory=dict)
    #: answer with the request body (to check that echoed secrets are masked)
    echo: bool = False


class Recorder:
    """What the server saw, and what it will answer next, per path (default: 202)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._script: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self.url = ""

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._script.setdefault(path, []).extend(replies)

    def next_reply(self, path: str) -> Reply:
        with self._lock:
            queue = self._script.get(path)
            return queue.pop(0) if queue else Reply()

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            recorder.record(
                Request("POST", self.path, dict(self.headers.items()), body, time.monotonic())
            )
            reply = recorder.next_reply(self.path)
            payload = body if reply.echo else reply.body
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serve() -> Iterator[Recorder]:
    """A recorder and its server on a free loopback port, for the duration of the block."""
    recorder = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    server.daemon_threads = True
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def slack_path() -> str:
    return f"/services/T000/B000/{SLACK_SECRET}"


def environ(http: Recorder) -> dict[str, str]:
    return {
        "PD_KEY": PD_KEY,
        "SLACK_URL": http.url + slack_path(),
        "HOOK_URL": http.url + "/hook",
        "HOOK_SECRET": HMAC_SECRET,
        "HOOK_AUTH": f"Bearer {AUTH_SECRET}",
    }


#: every provider kind against the recorder, fast retries; `{base}` is the recorder's URL
FULL_CONFIG = """
[paging]
renotify_interval = "4h"
external_url = "https://ops.example.com/ls"

[paging.retry]
max_tries = 4
base = "1s"
cap = "30s"
jitter = 0
timeout = "5s"

[paging.providers.pd]
type = "pagerduty"
base_url = "{base}"
routing_key_env = "PD_KEY"

[paging.providers.hook]
type = "webhook"
url_env = "HOOK_URL"
hmac_secret_env = "HOOK_SECRET"
headers = {{ "X-Team" = "infra" }}
headers_env = {{ "Authorization" = "HOOK_AUTH" }}

[paging.providers.chat]
type = "slack"
webhook_url_env = "SLACK_URL"
min_interval = "0s"

[[paging.routes]]
name = "prod"
match = {{ gateways = ["prod-*"] }}
min_severity = "error"
providers = ["pd", "hook", "chat"]

[paging.default_route]
providers = ["chat"]
"""


def load(text: str, env: dict[str, str], path: str = "fleet.toml") -> PagingConfig:
    """A PagingConfig through the same parser the fleet loader will use."""
    return parse_paging(tomllib.loads(text).get("paging", {}), path, env)


T0 = 1_764_000_000_000  # ms, 2025-11-24


def make_event(**overrides: Any) -> IncidentEvent:
    """An escalated session on a prod gateway, as the engine reports it."""
    fields: dict[str, Any] = {
        "dedup_key": "prod-1/agent:main:telegram:group:-100",
        "gateway": "prod-1",
        "key": "agent:main:telegram:group:-100",
        "kind": "escalated",
        "severity": "error",
        "labels": {"env": "prod"},
        "details": {"age_s": 1500, "attempts": 3, "last_error": "sessions.reset: timeout"},
        "started_ms": T0,
        "ts_ms": T0 + 1000,
    }
    fields.update(overrides)
    return IncidentEvent.model_validate(fields)


class Sleeps(list[float]):
    """An injectable sleep that records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

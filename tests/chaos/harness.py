"""Real processes for chaos runs: a valkey, the threaded simulator, celery workers and beats.

Every process is started in its own session (so a SIGKILL reaches a worker's children too) and
signalled only while its leader is alive: nothing but what this harness started is ever killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from supervisor.recovery.context import Engine
from supervisor.recovery.runtime import build_engine
from supervisor.redis_server import EmbeddedRedis
from supervisor.settings import Settings
from supervisor.simulator import SimulatorServer, Version
from supervisor.state import AuditRecord, StateStore
from tests.chaos.oracle import CountingGateway, read_audit, redis_dump, scan_text
from tests.support.paging import Recorder, _handler
from tests.support.procs import signal_group, wait_for

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]

#: canaries: none may show up in logs, Redis (broker, results, state, AOF), audit, pages, Flower
GW_TOKEN = "canary-chaos-gw-token-3c8e1d"
PD_KEY = "canary-chaos-pd-routing-71aa0b"
HMAC_SECRET = "canary-chaos-hmac-92bd4f"
REDIS_PASSWORD = "canary-chaos-redis-pw-5f0c2e"
FLOWER_PASSWORD = "canary-chaos-flower-pw-d41e"
METRICS_PASSWORD = "canary-chaos-metrics-pw-8b3a"
CANARIES = (GW_TOKEN, PD_KEY, HMAC_SECRET, REDIS_PASSWORD, FLOWER_PASSWORD, METRICS_PASSWORD)

PAGING = """
[paging]
renotify_interval = "4h"
[paging.retry]
max_tries = 3
base = "0.2s"
cap = "1s"
jitter = 0
timeout = "5s"
[paging.providers.pd]
type = "pagerduty"
base_url = "{base}"
routing_key_env = "CHAOS_PD_KEY"
[paging.providers.hook]
type = "webhook"
url = "{base}/hook"
hmac_secret_env = "CHAOS_HMAC_SECRET"
[paging.default_route]
providers = ["pd", "hook"]
"""


_environ_lock = threading.Lock()
_environ_users = 0
_environ_saved: dict[str, str | None] = {}


@contextlib.contextmanager
def chaos_environ() -> Iterator[None]:
    """The paging secrets in this process's environment, for engines built here (re-entrant
    and shared across threads: the last one out restores the environment)."""
    global _environ_users
    with _environ_lock:
        if _environ_users == 0:
            _environ_saved.clear()
            _environ_saved.update(
                {k: os.environ.get(k) for k in ("CHAOS_PD_KEY", "CHAOS_HMAC_SECRET")}
            )
            os.environ.update(CHAOS_PD_KEY=PD_KEY, CHAOS_HMAC_SECRET=HMAC_SECRET)
        _environ_users += 1
    try:
        yield
    finally:
        with _environ_lock:
            _environ_users -= 1
            if _environ_users == 0:
                for k, v in _environ_saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def children(self) -> list[int]:
        """Pids of this process's direct children (a worker's pool processes)."""
        try:
            raw = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in raw.split()]

    def signal_group(self, sig: int) -> None:
        if self.alive:
            signal_group(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group (leader and children), then reap the leader."""
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)

    def stop(self, timeout: float = 20) -> None:
        if not self.alive:
            return
        self.signal_group(signal.SIGCONT)
        self.signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        # the leader is gone after a clean stop; any straggler of its group gets SIGKILL now
        signal_group(self.popen.pid, signal.SIGKILL)


class Pages:
    """The loopback fake PagerDuty and webhook receiver (tests/escalation's Recorder)."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.recorder))
        self._server.daemon_threads = True
        self.recorder.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return self.recorder.url

    def triggers(self) -> dict[str, int]:
        """PagerDuty trigger events per dedup_key."""
        out: dict[str, int] = {}
        for r in self.recorder.to("/v2/enqueue"):
            body = r.json()
            if body.get("event_action") == "trigger":
                out[body["dedup_key"]] = out.get(body["dedup_key"], 0) + 1
        return out

    def resolves(self) -> dict[str, int]:
        """PagerDuty resolve events per dedup_key."""
        out: dict[str, int] = {}
        for r in self.recorder.to("/v2/enqueue"):
            body = r.json()
            if body.get("event_action") == "resolve":
                out[body["dedup_key"]] = out.get(body["dedup_key"], 0) + 1
        return out

    def bodies(self) -> bytes:
        return b"\n".join(r.body + repr(r.headers).encode() for r in self.recorder.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Cluster:
    """One chaos world: valkey (AOF on unless told), simulator, pages, fleet file, processes."""

    def __init__(
        self,
        root: Path,
        *,
        appendonly: bool = True,
        redis_args: tuple[str, ...] = (),
        password: bool = True,
        defaults: str = "",
        scan_interval: str = "1s",
        call_timeout: str = "1s",
        proxy_port: int | None = None,
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.stack = ExitStack()
        self.sim = SimulatorServer()
        self.password = REDIS_PASSWORD if password else None
        args = redis_args + (("--requirepass", REDIS_PASSWORD) if password else ())
        self.redis = EmbeddedRedis(root / "valkey", appendonly=appendonly, extra_args=args)
        self.pages: Pages | None = None
        self.defaults = defaults
        self.scan_interval = scan_interval
        self.call_timeout = call_timeout
        self.proxy_port = proxy_port
        self.procs: list[Proc] = []
        self.fleet = root / "fleet" / "fleet.toml"
        self._store: StateStore | None = None
        self.env_extra: dict[str, str] = {}
        #: files that hold a canary on purpose (the token file): not grepped
        self.secret_files: set[Path] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self.stack.enter_context(self.sim.running())
            self.redis.start()
            self.stack.callback(self.redis.stop)
            self.pages = Pages()
            self.stack.callback(self.pages.close)
            self.stack.callback(self._stop_all)
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._store is not None:
            self._store.close()
        self.stack.close()

    def _stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.redis.port}/0"

    @property
    def store(self) -> StateStore:
        if self._store is None:
            self._store = StateStore.from_url(self.url, connect_timeout_s=1, socket_timeout_s=5)
        return self._store

    # -- gateways and the fleet file ---------------------------------------------------------

    def gateway(self, name: str, version: str = "2026.9.6", **kw: Any) -> CountingGateway:
        gw = CountingGateway(name, version=Version(version), token=GW_TOKEN, **kw)
        self.sim.add(gw)
        return gw

    def write_fleet(
        self,
        path: Path | None = None,
        *,
        proxy_port: int | None = None,
        defaults: str | None = None,
        call_timeout: str | None = None,
        connect_timeout: str = "5s",
    ) -> Path:
        """A fleet file for every simulated gateway (through the proxy when given)."""
        path = path or self.fleet
        path.parent.mkdir(parents=True, exist_ok=True)
        token = path.parent / "token"
        token.write_text(GW_TOKEN + "\n")
        token.chmod(0o600)
        self.secret_files.add(token)
        settings = {
            "scan_interval": f'"{self.scan_interval}"',
            "stale_after": '"0s"',
            "call_timeout": f'"{call_timeout or self.call_timeout}"',
            "connect_timeout": f'"{connect_timeout}"',
            "backoff_base": '"0s"',
            "zombie_breaker_share": "1",
            # rows heal hundreds of sessions per gateway in minutes; row 20 tests the budget
            "max_heals_per_gateway_hour": "1000000",
        }
        for line in (self.defaults if defaults is None else defaults).splitlines():
            name, sep, value = line.partition("=")
            if sep:
                settings[name.strip()] = value.strip()
        lines = ["[defaults]", *(f"{k} = {v}" for k, v in settings.items()), ""]
        port = proxy_port or self.proxy_port
        for name in self.sim.gateways:
            url = f"ws://127.0.0.1:{port}/{name}" if port else self.sim.url(name)
            lines += ["[[gateways]]", f'name = "{name}"', f'url = "{url}"', 'token_file = "token"']
            lines.append("")
        assert self.pages is not None
        text = "\n".join(lines) + PAGING.format(base=self.pages.url)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return path

    def engine(
        self, fleet: Path | None = None, *, lease_ttl_s: float = 30.0, verify_delay_s: float = 0.0
    ) -> Engine:
        """An engine in this process (what `heal` and each worker child build)."""
        settings = Settings(
            state_dir=self.root / "state",
            key_prefix="ls:",
            verify_delay_s=verify_delay_s,
            lease_ttl_s=lease_ttl_s,
        )
        engine = build_engine(settings, self.url, fleet_path=fleet or self.fleet)
        self.stack.callback(engine.store.close)
        return engine

    # -- processes ---------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPERVISOR_", "FLOWER_"))}
        env.update(
            SUPERVISOR_REDIS_URL=self.url,
            SUPERVISOR_FLEET=str(self.fleet),
            SUPERVISOR_STATE_DIR=str(self.root / "state"),
            SUPERVISOR_FLEET_RELOAD_S="1",
            SUPERVISOR_BEAT_MAX_LOOP_INTERVAL_S="0.5",
            SUPERVISOR_VERIFY_DELAY_S="0.2",
            SUPERVISOR_LEASE_TTL_S="10",
            # below the lease TTL, as the worker insists (the step limit plus act_window)
            SUPERVISOR_STEP_TIME_LIMIT_S="8",
            SUPERVISOR_PAGING_TICK_S="2",
            CHAOS_PD_KEY=PD_KEY,
            CHAOS_HMAC_SECRET=HMAC_SECRET,
            PYTHONPATH=str(REPO),
        )
        env.update(self.env_extra)
        env.update(extra)
        return env

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.root,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_worker(
        self,
        name: str,
        *,
        concurrency: int = 2,
        events: bool = False,
        wait: bool = True,
        **env: str,
    ) -> Proc:
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "supervisor.app",
            "worker",
            "-l",
            "INFO",
            f"--concurrency={concurrency}",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "-n",
            f"{name}@chaos",
        ]
        if events:
            argv.append("-E")
        proc = self.spawn(name, argv, self.env(**env))
        if wait:
            wait_for(f"worker {name} ready", lambda: " ready." in proc.text() or not proc.alive, 60)
            if not proc.alive:
                raise RuntimeError(f"worker {name} exited:\n{proc.text()[-3000:]}")
        return proc

    def start_beat(self, name: str, **env: str) -> Proc:
        argv = [sys.executable, "-m", "celery", "-A", "supervisor.app", "beat", "-l", "INFO"]
        return self.spawn(name, argv, self.env(**env))

    # -- reading the outcome -----------------------------------------------------------------

    def audit(self) -> list[AuditRecord]:
        return read_audit(self.store)

    def leak_hits(self, extra: bytes = b"") -> list[str]:
        """Where any canary shows up: logs, AOF and data files, every Redis key, pages."""
        hits: list[str] = []
        for path in self.root.rglob("*"):
            if path.is_file() and path not in self.secret_files:
                for c in scan_text(path.read_bytes(), CANARIES):
                    hits.append(f"{c} in {path.relative_to(self.root)}")
        with contextlib.suppress(Exception):
            for c in scan_text(redis_dump(self.store), CANARIES):
                hits.append(f"{c} in a Redis key or value")
        if self.pages is not None:
            # the routing key is the PagerDuty request's own field and the HMAC secret signs the
            # webhook: neither may appear in what was sent except the routing key's own field
            for r in self.pages.recorder.requests:
                body = r.body
                if r.path == "/v2/enqueue":
                    body = body.replace(f'"routing_key": "{PD_KEY}"'.encode(), b"")
                    body = body.replace(f'"routing_key":"{PD_KEY}"'.encode(), b"")
                for c in scan_text(body + repr(r.headers).encode(), CANARIES):
                    hits.append(f"{c} in a page to {r.path}")
        for c in scan_text(extra, CANARIES):
            hits.append(f"{c} in extra text")
        return hits


@contextlib.contextmanager
def cluster(root: Path, **kw: Any) -> Iterator[Cluster]:
    with Cluster(root, **kw) as c:
        yield c

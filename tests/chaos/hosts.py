"""Row 26 (issue 13): two worker hosts on one Redis; host A frozen and cut off mid-recovery.

Each host is its own process tree: the `worker` `up` starts (queues scan and act, prefork,
concurrency 2, hostname `worker@<host>`), its own state dir, and the one device key every host
mounts (`SUPERVISOR_DEVICE_KEY_FILE`, as the README recommends). Host B also runs beat (one
beat ticks; where it runs does not matter here). Host A reaches Redis through a TCP link this
test can cut (every connection reset, new ones refused) and restore; host B directly.

One run, on two fresh zombies (one per gateway generation):
1. B stops consuming `act` (a remote-control `cancel_consumer`), so A's two worker children
   take the two aborts; each stops itself right after renewing its lease (failpoint
   `after_lease:abort`, action `stop`, once per session). A's master is then SIGSTOPped too
   (the whole host frozen: its hard time limit cannot fire) and its Redis link cut.
2. B consumes `act` again. Its scans wait out A's lease and start a new attempt:
   * "healed" runs: B heals both zombies;
   * "contended" runs: B stops at its own `after_lease:reset`, holding the new lease on a row
     that still looks exactly as A read it (same sessionId, still a zombie): only A's fenced
     lease deadline tells A that the session is no longer its own.
3. A's link is restored and A returns: in 3 runs of 4 its children before its master (the worst
   interleaving of a frozen host's return: the children act before their master's time limits
   can stop them), and each must refuse and say so in the audit; in the others its master
   first, which kills them at their hard time limit as it reconnects (what found the Celery
   crash `supervisor.app._track_live_children_only` works around). Then B goes on.

Counted at the simulated gateways: every abort, reset and send per session; each zombie must
get exactly one recovery's mutations (one abort, one reset), healed within the lease TTL plus
`TAKEOVER_SLACK_S` of A's lease renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from celery import Celery
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from supervisor.core.ladder import NOT_SENT
from supervisor.queues import ACT_QUEUE
from supervisor.settings import Settings
from supervisor.state import AuditRecord
from supervisor.up import child_commands
from tests.chaos.common import Stuck, add_zombie, settle, tally
from tests.chaos.harness import Cluster, Proc
from tests.chaos.oracle import CountingGateway, Row
from tests.support.procs import wait_for

LEASE_TTL_S = 5.0
STEP_TIME_LIMIT_S = 4.0
SCAN_INTERVAL_S = 1.0
#: past A's lease expiry: two scan intervals (B's next scan, beat's loop), then abort, reset
#: and verify (0.2 s delay) on a loaded two-core machine
TAKEOVER_SLACK_S = 2 * SCAN_INTERVAL_S + 4.0
#: what A's frozen step may say when it returns: the ladder's not-sent outcomes, or an error
REFUSALS = NOT_SENT | {"gateway_error", "state_error", "resumed"}


class Link:
    """A TCP link to Redis that can be cut (every connection reset, new ones refused)."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.port = 0
        self.is_cut = False
        self._open: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        with contextlib.suppress(Exception):
            dst.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass  # the link is shutting down
        finally:
            self._open -= {writer, up_writer}

    async def _cut(self) -> None:
        self.is_cut = True
        for writer in list(self._open):
            writer.transport.abort()  # RST: what a host sees when its network goes away

    def cut(self) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(5)

    def restore(self) -> None:
        self.is_cut = False

    @contextlib.contextmanager
    def running(self) -> Iterator[Link]:
        ready = threading.Event()
        stop: asyncio.Event | None = None

        async def main() -> None:
            nonlocal stop
            stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await stop.wait()
            server.close()
            await self._cut()

        thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True, name="link")
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("link did not start")
        try:
            yield self
        finally:
            assert self._loop is not None and stop is not None
            self._loop.call_soon_threadsafe(stop.set)
            thread.join(5)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def stopped_children(proc: Proc) -> list[int]:
    return [pid for pid in proc.children() if _state(pid) == "T"]


def frozen(proc: Proc) -> bool:
    """Whether a step froze in `proc`: the process itself (a threads pool) or a child."""
    return _state(proc.popen.pid) == "T" or bool(stopped_children(proc))


def _tag(s: Stuck) -> str:
    return quote(f"{s.name}/{s.key}", safe="")


def device_key(path: Path) -> Path:
    """The one key every host mounts (what `openssl genpkey -algorithm ed25519` makes)."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return path


class Hosts:
    """Host A (through the link, failpoint armed) and host B (direct, beat), on one Cluster:
    each the `worker` (scans) and `act` (steps) processes `up` starts, in `pool`."""

    def __init__(self, c: Cluster, link: Link, pool: str = "threads") -> None:
        self.c = c
        self.link = link
        self.pool = pool
        self.prefork = pool == "prefork"
        key = device_key(c.root / "device-ed25519.pem")
        self.once_a = c.root / "once-a"
        self.once_b = c.root / "once-b"
        for d in (self.once_a, self.once_b):
            d.mkdir(parents=True, exist_ok=True)
        common = {
            "SUPERVISOR_DEVICE_KEY_FILE": str(key),
            "SUPERVISOR_LEASE_TTL_S": f"{LEASE_TTL_S:g}",
            "SUPERVISOR_STEP_TIME_LIMIT_S": f"{STEP_TIME_LIMIT_S:g}",
            "SUPERVISOR_FAILPOINT_ACTION": "stop",
        }
        url_a = c.url.replace(f":{c.redis.port}/", f":{link.port}/")
        self._a_args = (url_a, common, {
            "SUPERVISOR_FAILPOINT": "after_lease:abort",
            "SUPERVISOR_FAILPOINT_ONCE": str(self.once_a / "{tag}"),
        })  # fmt: skip
        self.a = self._worker("host-a", self._a_args[0], common, **self._a_args[2])
        self.a_scan = self._worker("host-a", url_a, common, kind="worker")
        #: times host A's worker exited and was started again (as compose's restart policy does)
        self.a_restarts = 0
        self.b = self._worker(
            "host-b", c.url, common,
            SUPERVISOR_FAILPOINT="after_lease:reset",
            SUPERVISOR_FAILPOINT_ONCE=str(self.once_b / "{tag}"),
        )  # fmt: skip
        self.b_scan = self._worker("host-b", c.url, common, kind="worker")
        c.start_beat("host-b-beat", **self._env("host-b", c.url, common))
        self.control = Celery(broker=c.url, set_as_current=False)

    def _env(self, host: str, url: str, common: dict[str, str], **extra: str) -> dict[str, str]:
        state = self.c.root / host / "state"
        return {
            **common,
            "SUPERVISOR_REDIS_URL": url,
            "SUPERVISOR_STATE_DIR": str(state),
            "SUPERVISOR_METRICS_DIR": str(self.c.root / host / "metrics"),
            **extra,
        }

    def _worker(
        self,
        host: str,
        url: str,
        common: dict[str, str],
        log: str = "",
        kind: str = "act",
        **extra: str,
    ) -> Proc:
        settings = Settings(state_dir=self.c.root / host, act_pool=self.pool)
        argv = child_commands(settings)[kind]
        argv = [f"--hostname={kind}@{host}" if a.startswith("--hostname=") else a for a in argv]
        env = self.c.env(**self._env(host, url, common, **extra))
        proc = self.c.spawn(log or f"{host}-{kind}", argv, env)
        wait_for(f"{host} ready", lambda: " ready." in proc.text() or not proc.alive, 60)
        if not proc.alive:
            raise RuntimeError(f"{host} exited:\n{proc.text()[-3000:]}")
        return proc

    def b_consumes_act(self, on: bool) -> None:
        verb = self.control.control.add_consumer if on else self.control.control.cancel_consumer
        for _ in range(5):
            if verb(ACT_QUEUE, destination=["act@host-b"], reply=True, timeout=3):
                return
        raise RuntimeError(f"host B did not answer {'add' if on else 'cancel'}_consumer")

    def wait_a_consuming(self, timeout: float = 60) -> bool:
        """Until A's master answers a ping: back on Redis after the last run's return. False
        when it had exited instead (it is started again, as compose's restart policy would)."""
        with contextlib.suppress(TimeoutError):
            wait_for("host A exits", lambda: not self.a.alive, 1.0)
        exited = not self.a.alive
        if exited:
            self.a_restarts += 1
            url, common, extra = self._a_args
            self.a = self._worker("host-a", url, common, log=f"host-a-{self.a_restarts}", **extra)
        wait_for(
            "host A back on Redis",
            lambda: self.control.control.ping(destination=["act@host-a"], timeout=0.5),
            timeout,
        )
        return not exited

    def close(self) -> None:
        self.control.close()


def _last_recovery(audit: list[AuditRecord], s: Stuck, step: str) -> str | None:
    """The recovery whose `step` was announced last on this session (at the freeze: A's)."""
    found = None
    for r in audit:
        if r.gateway == s.name and r.key == s.key and r.step == step and r.outcome == "sending":
            found = r.recovery_id
    return found


def _outcome(audit: list[AuditRecord], s: Stuck, recovery_id: str, step: str) -> str | None:
    for r in audit:
        if (
            r.gateway == s.name and r.key == s.key and r.recovery_id == recovery_id
            and r.step == step and r.outcome != "sending"
        ):  # fmt: skip
            return r.outcome
    return None


def _mtime_mono(path: Path) -> float:
    """When `path` was made, on the monotonic clock."""
    return time.monotonic() - (time.time() - path.stat().st_mtime)


def two_hosts(root: Path, runs: int, pool: str = "threads") -> Row:
    started = time.monotonic()
    row = Row("26. host cut off from Redis mid-recovery, two hosts")
    outcomes: dict[str, int] = {}
    takeovers: list[float] = []
    held_total = direct = 0
    orders = {True: 0, False: 0}
    frozen_attempts: set[str | None] = set()
    bound = LEASE_TTL_S + TAKEOVER_SLACK_S
    with (
        Cluster(root, scan_interval=f"{SCAN_INTERVAL_S:g}s") as c,
        Link(c.redis.port).running() as link,
    ):
        gws: list[CountingGateway] = [c.gateway("v4", "2026.9.6"), c.gateway("v3", "2026.3.24")]
        c.write_fleet()
        hosts = Hosts(c, link, pool)
        stuck: list[Stuck] = []
        try:
            for i in range(runs):
                # healed / contended, children first; healed, master first; contended again
                contended, children_first = i % 2 == 1, i % 4 != 2
                orders[children_first] += 1
                row.runs += 1
                try:
                    problems = _one_run(
                        c, hosts, gws, (contended, children_first), bound,
                        outcomes, takeovers, stuck, frozen_attempts,
                    )  # fmt: skip
                except TimeoutError as exc:
                    problems = [f"{type(exc).__name__}: {exc}"]
                held = sum(1 for p in problems if p == "held")
                held_total += held
                direct += sum(1 for p in problems if p == "direct")
                real = [p for p in problems if p not in ("held", "direct")]
                if real or held == 0:
                    row.problems += [f"run {i} ({'contended' if contended else 'healed'}): {p}"
                                     for p in real or ["A held no zombie"]]  # fmt: skip
                else:
                    row.survived += 1
            if not hosts.wait_a_consuming():  # the last return, too
                row.problems.append("host A's worker had exited after the last return")
                row.survived = min(row.survived, row.runs - 1)
        finally:
            hosts.close()
        settle(c.store, stuck, timeout=15)
        # the oracle allows each announcing attempt its one request per episode; the frozen
        # host's attempts get no allowance: any request of theirs is a duplicate (and a
        # mutation without its intent). B's attempts may be more than one (one that found its
        # read too old stops `stale_read`; the next aborts again, as a recovery does)
        audit = [
            r for r in c.audit()
            if not (r.outcome == "sending" and r.recovery_id in frozen_attempts)
        ]  # fmt: skip
        tally(row, gws, audit, {(s.name, s.key) for s in stuck})
        for s in stuck:
            resets = [a for a in s.gw.acts if a.key == s.key and a.method == "sessions.reset"]
            if len(resets) != 1:
                row.problems.append(f"{s.name}/{s.key}: reset {len(resets)} times, not once")
                row.survived = min(row.survived, row.runs - 1)
        for proc in c.procs:
            if "Unrecoverable error" in proc.text():
                row.problems.append(f"{proc.name} logged an unrecoverable error and exited")
        for proc in (hosts.a, hosts.b):
            if not proc.alive:
                row.problems.append(f"{proc.name} exited")
                row.survived = min(row.survived, row.runs - 1)
        row.leaks = len(hits := c.leak_hits())
        row.problems += hits
        row.notes += [
            f"{held_total} zombies held by the frozen host ({direct} taken by B directly)",
            "A's outcomes on return " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())),
            f"B took over {max(takeovers, default=0):.1f} s at worst after A's lease renewal "
            f"(bound: lease TTL {LEASE_TTL_S:g} s + {TAKEOVER_SLACK_S:g} s)",
            f"A returned children first {orders[True]} times, master first {orders[False]}",
            f"host A's worker exited {hosts.a_restarts} time(s)",
        ]
        row.seconds = time.monotonic() - started
        return row


def _one_run(
    c: Cluster,
    hosts: Hosts,
    gws: list[CountingGateway],
    variant: tuple[bool, bool],
    bound: float,
    outcomes: dict[str, int],
    takeovers: list[float],
    stuck: list[Stuck],
    frozen_attempts: set[str | None],
) -> list[str]:
    contended, children_first = variant
    out: list[str] = []
    if not hosts.wait_a_consuming():
        out.append("host A's worker had exited after the last return")
    hosts.b_consumes_act(False)
    zs = [add_zombie(c.sim, gw, "host") for gw in gws]
    stuck += zs
    if not contended:
        for s in zs:  # B runs these sessions' steps through (its failpoint fires once per tag)
            (hosts.once_b / _tag(s)).touch()

    def frozen_enough() -> bool:
        made = [hosts.once_a / _tag(s) for s in zs if (hosts.once_a / _tag(s)).exists()]
        if not made or not frozen(hosts.a):
            return False
        # a stopped child outlives its task's hard time limit only if its master stops too:
        # go with what A holds once the first has waited a while for the other
        return len(made) == len(zs) or time.monotonic() - min(map(_mtime_mono, made)) > 1.5

    with contextlib.suppress(TimeoutError):
        wait_for("A's children frozen after renewing the leases", frozen_enough, 30, every=0.05)
    for proc in (hosts.a, hosts.a_scan):  # the whole host frozen
        os.kill(proc.popen.pid, signal.SIGSTOP)
    held = [s for s in zs if (hosts.once_a / _tag(s)).exists()]
    out += ["held"] * len(held) + ["direct"] * (len(zs) - len(held))
    renewed = {s.key: _mtime_mono(hosts.once_a / _tag(s)) for s in held}
    for s in zs:
        if s not in held:
            # B takes these straight away: if its child stopped here too, B's own master would
            # kill it at its hard time limit (B is not frozen), and the next attempt would
            # abort once more, legitimately but beyond the one recovery this row allows
            (hosts.once_b / _tag(s)).touch()
    audit = c.audit()
    a_recovery = {s.key: _last_recovery(audit, s, "abort") for s in held}
    frozen_attempts.update(a_recovery.values())
    hosts.link.cut()
    hosts.b_consumes_act(True)
    try:
        if contended:
            wait_for(
                "B holding the new leases, frozen before its reset",
                # a threads pool freezes whole at its first: B holds one of them then
                lambda: (
                    frozen(hosts.b)
                    and (all if hosts.prefork else any)(
                        (hosts.once_b / _tag(s)).exists() for s in held
                    )
                ),
                bound + 10,
                every=0.05,
            )
            for s in held:
                if not (hosts.once_b / _tag(s)).exists():
                    continue  # B's process froze at another one first
                took = _mtime_mono(hosts.once_b / _tag(s)) - renewed[s.key]
                takeovers.append(took)
                if took > bound:
                    out.append(f"{s.name}/{s.key}: B took over after {took:.1f} s")
        else:
            settle(c.store, held, timeout=bound + 10, every=0.05)
            for s in held:
                if s.done_at is None or s.escalated:
                    out.append(f"{s.name}/{s.key}: not healed by B")
                    continue
                took = s.done_at - renewed[s.key]
                takeovers.append(took)
                if took > bound:
                    out.append(
                        f"{s.name}/{s.key}: healed {took:.1f} s after A's renewal (made "
                        f"{renewed[s.key] - s.since:.1f} s before it)"
                    )
    except TimeoutError as exc:
        out.append(str(exc))
    # A comes back, its link first; then either its children before its master (they act
    # before their master's time limits can stop them: the stale act the fence must refuse),
    # or its master first (it kills them at their hard time limit as it reconnects to Redis)
    hosts.link.restore()
    if not (hosts.prefork and children_first):  # a threads pool: the process is the host
        os.kill(hosts.a.popen.pid, signal.SIGCONT)
        with contextlib.suppress(TimeoutError):
            wait_for(
                "A's master kills its stopped children", lambda: not stopped_children(hosts.a), 3
            )
    for pid in stopped_children(hosts.a):
        os.kill(pid, signal.SIGCONT)
    mine: dict[str, str | None] = {}
    try:
        wait_for(
            "A's returning steps in the audit",
            lambda: all(_a_outcome(c, s, a_recovery[s.key], mine) for s in held),
            # a step its master killed says so only when its redelivered copy has run
            20 if children_first or not hosts.prefork else 10,
            every=0.1,
        )
    except TimeoutError:
        if (
            children_first or not hosts.prefork
        ):  # these ran their checks: each must have said what it did
            out.append(f"A's steps said nothing in the audit: {mine}")
    for s in held:
        said = mine.get(s.key)
        if said is None and hosts.prefork and not children_first:
            # killed at its hard time limit as its master came back: it sent nothing (the
            # oracle counts that); its copy is back after the master's reconnect or at the
            # visibility timeout, and resumes from its claim
            said = "killed (redelivery pending)"
        elif said is not None and said not in REFUSALS:
            out.append(f"{s.name}/{s.key}: A's returning abort ended {said!r}")
        if said is not None:
            outcomes[said] = outcomes.get(said, 0) + 1
    for proc in (hosts.a, hosts.a_scan):
        os.kill(proc.popen.pid, signal.SIGCONT)
    for pid in [hosts.b.popen.pid, *stopped_children(hosts.b)]:
        os.kill(pid, signal.SIGCONT)
    settle(c.store, zs, timeout=bound + 10, every=0.05)
    for s in zs:
        if s.done_at is None or s.escalated:
            out.append(f"{s.name}/{s.key}: not healed")
    return out


def _a_outcome(c: Cluster, s: Stuck, rid: str | None, mine: dict[str, str | None]) -> bool:
    said = _outcome(c.audit(), s, rid, "abort") if rid else None
    mine[s.key] = said
    return said is not None

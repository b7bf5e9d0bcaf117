"""Rows 22-25: hostile input at the edges (secret files, redirects, clocks, listing sizes).

22. hostile secret files: the CLI exits 64 with one line for each, and a running worker, beat
    and Flower keep the last good fleet (scans and heals go on, one page) while the canary in
    the file shows up nowhere.
23. a gateway that answers the upgrade with a redirect: a protocol error, no token sent.
24. a hostile challenge `ts` / hello `uptimeMs`: no crash, no false zombie.
25. oversized listings: the scan is a protocol error and the worker's peak RSS stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from celery import Celery
from websockets.asyncio.server import ServerConnection, serve

from supervisor.recovery.context import FLEET_DEDUP_KEY
from supervisor.recovery.runtime import run_ladder
from supervisor.scan import look
from tests.chaos.common import new_key, tally
from tests.chaos.harness import FLOWER_PASSWORD, GW_TOKEN, Cluster, Proc
from tests.chaos.oracle import Row, redis_dump, scan_text
from tests.support.fixtures import spec_for
from tests.support.procs import free_port, wait_for

#: the secret written into the hostile files: it must show up nowhere
HOSTILE = "canary-chaos-hostile-secret-6a2f"
#: how a leaked HOSTILE may look: plain, as UTF-16 (NUL-interleaved), or base64 of UTF-16
HOSTILE_FORMS = (HOSTILE, "c\x00a\x00n\x00a\x00r\x00y", "Y2FuYXJ5LWNoYW9z", "YwBhAG4AYQByAHkA")

#: every hostile kind of secret file: name -> how to make it at `path`
KINDS: dict[str, Callable[[Path], object]] = {
    "non-utf8": lambda p: p.write_bytes(HOSTILE.encode() + b"\xa0\n"),
    "utf16": lambda p: p.write_bytes(HOSTILE.encode("utf-16")),
    "utf16-no-bom": lambda p: p.write_bytes(HOSTILE.encode("utf-16-le")),
    "huge": lambda p: p.write_bytes(HOSTILE.encode() * 4096),  # 128 KiB
    "fifo": lambda p: os.mkfifo(p),
    "symlink-to-dev-zero": lambda p: p.symlink_to("/dev/zero"),
    "dev-zero": lambda p: p.symlink_to("/dev/zero"),  # replaced by the path itself below
    "directory": lambda p: p.mkdir(),
}


def _hostile_hits(root: Path, skip: set[Path], extra: bytes = b"") -> list[str]:
    hits: list[str] = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path not in skip:
            with contextlib.suppress(OSError):
                for form in scan_text(path.read_bytes(), HOSTILE_FORMS):
                    hits.append(f"hostile secret ({form[:8]!r}...) in {path.relative_to(root)}")
    for form in scan_text(extra, HOSTILE_FORMS):
        hits.append(f"hostile secret ({form[:8]!r}...) in Redis, Flower or pages")
    return hits


def _make(kind: str, path: Path) -> Path:
    """The hostile file of `kind` at `path` (a fresh path each time); the path to name."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    if kind == "dev-zero":
        return Path("/dev/zero")
    KINDS[kind](path)
    if path.is_file() and not path.is_symlink():
        path.chmod(0o600)
    return path


# -- 22. hostile secret files -------------------------------------------------------------------

CLI_FLEET = """
[[gateways]]
name = "gw"
url = "ws://127.0.0.1:9"
{token}

[paging.providers.pd]
type = "pagerduty"
{routing}

[paging.default_route]
providers = ["pd"]
"""


def _cli(root: Path, kinds: list[str], row: Row) -> int:
    """Every kind, as token_file and as routing_key_file, through `fleet validate` and
    `check`: exit 64, one line on stderr, no traceback, no byte of the secret."""
    good = root / "good-secret"
    good.write_text("a-good-secret\n")
    good.chmod(0o600)
    runs = 0
    for kind in kinds:
        for field in ("token_file", "routing_key_file"):
            hostile = _make(kind, root / f"{kind}-{field}")
            token = f'token_file = "{hostile if field == "token_file" else good}"'
            routing = f'routing_key_file = "{hostile if field == "routing_key_file" else good}"'
            fleet = root / f"fleet-{kind}-{field}.toml"
            fleet.write_text(CLI_FLEET.format(token=token, routing=routing))
            for command in (["fleet", "validate", str(fleet)], ["check", "--fleet", str(fleet)]):
                runs += 1
                started = time.monotonic()
                try:
                    proc = subprocess.run(
                        [sys.executable, "-m", "supervisor", *command],
                        capture_output=True,
                        timeout=30,
                        check=False,
                        env={
                            k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")
                        },
                    )
                except subprocess.TimeoutExpired:
                    row.problems.append(f"{kind} as {field}: {command[0]} hung")
                    continue
                err = proc.stderr.decode(errors="replace")
                ok = (
                    proc.returncode == 64
                    and "Traceback" not in err
                    and len(err.strip().splitlines()) == 1
                    and time.monotonic() - started < 15
                )
                leaks = scan_text(proc.stdout + proc.stderr, HOSTILE_FORMS)
                row.leaks += len(leaks)
                row.survived += ok
                if not ok or leaks:
                    row.problems.append(
                        f"{kind} as {field}: {command[0]} exit {proc.returncode}: {err[-300:]!r}"
                    )
    return runs


def hostile_secrets(root: Path, n_kinds: int) -> Row:
    """Row 22: the CLI part for `n_kinds` kinds, then all of them against running processes."""
    started = time.monotonic()
    row = Row("22. hostile secret files (non-UTF-8, UTF-16, huge, FIFO, symlink, /dev/zero)")
    kinds = list(KINDS)[: max(1, n_kinds)]
    cli_dir = root / "cli"
    cli_dir.mkdir(parents=True, exist_ok=True)
    row.runs += _cli(cli_dir, kinds, row)
    with Cluster(root / "world") as c:
        gw = c.gateway("v4", "2026.9.6")
        first = new_key("hs")
        c.sim.call(gw.add_zombie, first)
        fleet = c.write_fleet()
        token = fleet.parent / "token"
        flower_port = free_port()
        c.start_worker("w", events=True)
        beat = c.start_beat("beat")
        c.spawn(
            "flower",
            [sys.executable, "-m", "celery", "-A", "supervisor.app", "flower",
             "--address=127.0.0.1", f"--port={flower_port}"],
            c.env(FLOWER_BASIC_AUTH=f"admin:{FLOWER_PASSWORD}"),
        )  # fmt: skip
        wait_for("the first zombie healed", lambda: gw.healthy(first), 60)
        good = token.read_bytes()
        hostile_paths: set[Path] = set()
        healed_while_broken = 0
        original = fleet.read_text()
        for index, kind in enumerate(kinds):
            runs_before = _broken(c)
            named = _make(kind, fleet.parent / f"hostile-{index}")
            hostile_paths.add(named)
            # one broken version after another: one incident, paged once
            fleet.write_text(original.replace('token_file = "token"', f'token_file = "{named}"'))
            row.runs += 1
            try:
                wait_for(f"{kind}: a fleet_broken record", _more_broken(c, runs_before), 30)
                # the last good fleet still supervises: a new zombie is healed meanwhile
                key = new_key("hs")
                c.sim.call(gw.add_zombie, key)
                wait_for(f"{kind}: a zombie healed meanwhile", partial(gw.healthy, key), 30)
                healed_while_broken += 1
                row.survived += 1
            except TimeoutError as exc:
                row.problems.append(str(exc))
        fleet.write_text(original)
        repaired = False
        with contextlib.suppress(TimeoutError):
            repaired = bool(
                wait_for(
                    "fleet_repaired",
                    lambda: any(r.outcome == "fleet_repaired" for r in c.audit()),
                    30,
                )
            )
        if not repaired:
            row.problems.append("no fleet_repaired record after the good file came back")
            row.survived = min(row.survived, row.runs - 1)
        token.write_bytes(good)
        assert c.pages is not None
        # triggers delivered for the fleet incident, per provider (the route picks which)
        sent: dict[str, int] = {}
        for r in c.audit():
            if (
                f"{r.gateway}/{r.key}" == FLEET_DEDUP_KEY
                and (r.detail or "").startswith("trigger via")
                and r.outcome == "ok"
            ):
                provider = (r.detail or "").split(" via ", 1)[1].split(":", 1)[0]
                sent[provider] = sent.get(provider, 0) + 1
        pages = max(sent.values(), default=0)
        if not sent or set(sent.values()) != {1}:
            row.problems.append(f"triggers for {FLEET_DEDUP_KEY} per provider: {sent}, expected 1")
            row.survived = min(row.survived, row.runs - 1)
        flower = f"http://127.0.0.1:{flower_port}"
        auth = ("admin", FLOWER_PASSWORD)
        bodies = [_get(flower + "/api/tasks", auth)]
        with contextlib.suppress(ValueError):
            for task_id in list(httpx.Response(200, content=bodies[0]).json())[:50]:
                bodies.append(_get(f"{flower}/api/task/info/{task_id}", auth))
        extra = b"\n".join(bodies) + redis_dump(c.store)
        c.secret_files |= {p for p in hostile_paths if p.is_file()}
        # pages carry the routing key by design: leak_hits checks them itself
        hits = _hostile_hits(c.root, c.secret_files, extra + c.pages.bodies())
        hits += c.leak_hits(extra=extra)
        row.leaks += len(hits)
        row.problems += hits
        beat_lines = beat.text().count("fleet file not reloaded")
        tally(row, [gw], c.audit(), None)
        row.notes.append(
            f"CLI: {len(kinds)} kinds x token_file/routing_key_file x validate/check, exit 64 "
            f"one line; running: {healed_while_broken}/{len(kinds)} zombies healed on the last "
            f"good fleet, {pages} page per provider {sorted(sent)} (resolved: {repaired}), "
            f"beat logged {beat_lines} line(s); "
            "grepped logs, Redis, "
            f"AOF, {len(bodies)} Flower answers, pages"
        )
    row.seconds = time.monotonic() - started
    return row


def _broken(c: Cluster) -> int:
    return sum(1 for r in c.audit() if r.outcome == "fleet_broken")


def _more_broken(c: Cluster, than: int) -> Callable[[], bool]:
    return lambda: _broken(c) > than


def _get(url: str, auth: tuple[str, str]) -> bytes:
    try:
        return httpx.get(url, auth=auth, timeout=10).content
    except httpx.HTTPError:
        return b""


# -- 23. a redirecting gateway ----------------------------------------------------------------


class _Trap:
    def __init__(self) -> None:
        self.connections = 0
        self.frames: list[str] = []

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.send('{"type":"event","event":"connect.challenge","payload":{"nonce":"n"}}')
        async for message in ws:
            self.frames.append(str(message))


async def _redirects(runs: int) -> tuple[int, int, int, list[str]]:
    trap = _Trap()
    statuses = (301, 302, 303, 307, 308)
    problems: list[str] = []
    ok = 0
    async with serve(trap.handler, "127.0.0.1", 0) as trap_server:
        trap_port = trap_server.sockets[0].getsockname()[1]
        status_of: dict[int, int] = {}

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            port = writer.get_extra_info("sockname")[1]
            await reader.readuntil(b"\r\n\r\n")
            status = status_of[port]
            writer.write(
                f"HTTP/1.1 {status} Moved\r\nLocation: ws://127.0.0.1:{trap_port}/\r\n"
                "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            for i in range(runs):
                status_of[port] = statuses[i % len(statuses)]
                spec = spec_for(f"ws://127.0.0.1:{port}/", token=GW_TOKEN, connect_timeout="5s")
                report, scan = await look(spec, None)
                good = scan is None and report.error_kind == "protocol"
                ok += good
                if not good:
                    problems.append(f"HTTP {status_of[port]}: {report.error_kind} {report.error}")
    tokens = sum(GW_TOKEN in f for f in trap.frames)
    return ok, trap.connections, tokens, problems


def redirects(root: Path, runs: int) -> Row:
    started = time.monotonic()
    row = Row("23. gateway redirects the upgrade (301/302/303/307/308)")
    ok, connections, tokens, problems = asyncio.run(_redirects(runs))
    row.runs, row.survived = runs, ok if connections == 0 else 0
    row.leaks = tokens
    row.problems += problems
    if connections:
        row.problems.append(f"{connections} connection(s) reached the redirect target")
    row.notes.append(
        f"{ok}/{runs} reported as protocol errors; {connections} connections to the target, "
        f"{tokens} tokens sent"
    )
    row.seconds = time.monotonic() - started
    return row


# -- 24. hostile challenge ts and hello uptime ---------------------------------------------------

HOSTILE_TS: tuple[tuple[str, Callable[[float], object]], ...] = (
    ("400-digit ts", lambda now: 10**400),
    ("ts Infinity", lambda now: math.inf),
    ("ts -Infinity", lambda now: -math.inf),
    ("ts NaN", lambda now: math.nan),
    ("ts in microseconds", lambda now: int(now * 1000)),
    ("ts in seconds", lambda now: int(now / 1000)),
    ("ts a string", lambda now: "now"),
    ("ts true", lambda now: True),
)
HOSTILE_UPTIME: tuple[tuple[str, object], ...] = (
    ("400-digit uptime", 10**400),
    ("uptime Infinity", math.inf),
    ("uptime NaN", math.nan),
    ("uptime negative", -1),
    ("uptime 1e15 ms", 10**15),
    ("uptime a string", "1h"),
)


def hostile_clocks(root: Path, runs: int) -> Row:
    """Each run: one gateway (both versions, clock 2 h ahead or behind ours, so a guessed
    offset of 0 would misplace every row by 2 h) sends one hostile ts or uptime; it holds a
    young and an older live run, a finished session and a young lane without a run. With
    stale_after 2 min, a misread clock makes zombies of them: nothing may be acted on."""
    started = time.monotonic()
    row = Row("24. hostile challenge ts / hello uptimeMs")
    crashes = errors = 0
    with Cluster(root) as c:
        gws = [
            c.gateway(f"{v.replace('.', '-')}-{sign}", v, clock_skew_s=skew)
            for v in ("2026.9.6", "2026.3.24")
            for sign, skew in (("ahead", 7200.0), ("behind", -7200.0))
        ]
        c.write_fleet(defaults='stale_after = "2m"\nlane_timeout = "2h"')
        engine = c.engine()
        cases: list[tuple[str, str, object]] = [
            *(("ts", name, make) for name, make in HOSTILE_TS),
            *(("uptime", name, value) for name, value in HOSTILE_UPTIME),
        ]
        seen: dict[str, int] = {}
        for i in range(runs):
            gw = gws[i % len(gws)]
            which, label, value = cases[(i // len(gws)) % len(cases)]
            seen[label] = seen.get(label, 0) + 1
            gw.challenge_ts = value(gw.now_ms()) if which == "ts" else None  # type: ignore[operator]
            gw.uptime_ms = value if which == "uptime" else None
            keys = [new_key(n) for n in ("young", "older", "done", "quiet")]
            c.sim.call(lambda g=gw, k=keys[0]: g.add_live(k, age_s=5))
            c.sim.call(lambda g=gw, k=keys[1]: g.add_live(k, age_s=240))
            c.sim.call(lambda g=gw, k=keys[2]: g.add_idle(k, age_s=30))
            if gw.version.value == "2026.9.6" and which == "ts":
                # a lane without a run, quiet for 60 s: pending, and a zombie only if the 2 h
                # offset were taken as 0
                c.sim.call(lambda g=gw, k=keys[3]: g.add_zombie(k, age_s=60))
            before = sum(len(g.acts) for g in gws)
            crashed = False
            try:
                actions = run_ladder(engine, gw.name)
            except Exception as exc:
                crashes += 1
                crashed = True
                row.problems.append(f"{label} on {gw.name}: {type(exc).__name__}: {exc}")
                actions = []
            failed = [a for a in actions if a.outcome == "gateway_error"]
            errors += bool(failed)
            acted = sum(len(g.acts) for g in gws) - before
            ok = not failed and acted == 0 and not crashed
            row.runs += 1
            row.survived += ok
            if not ok:
                row.problems.append(f"{label} on {gw.name}: {acted} action(s), {failed}")
            for key in keys:
                c.sim.call(gw.drop, key)
        gw_errors = f"{errors} gateway errors" if errors else "every gateway reported"
        row.notes.append(
            f"{len(seen)} hostile values x 2 versions x clock +-2 h; {crashes} crashes, "
            f"{gw_errors}; 0 actions allowed"
        )
        tally(row, gws, c.audit(), None)
        hits = c.leak_hits()
        row.leaks, row.problems = len(hits), row.problems + hits
    row.seconds = time.monotonic() - started
    return row


# -- 25. oversized listings ----------------------------------------------------------------------


def _peak_rss(proc: Proc) -> int:
    """The largest peak RSS (VmHWM) among the worker's processes, in bytes."""
    from bench.common import group_pids

    peak = 0
    for pid in group_pids(proc.popen.pid):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
    return peak


@contextlib.contextmanager
def _client(c: Cluster) -> Iterator[Celery]:
    app = Celery(broker=c.url, backend=c.url)
    try:
        yield app
    finally:
        app.close()


def oversized_listings(root: Path, scans: int, rows: int = 10_000) -> Row:
    """A 2026.9.6 gateway listing `rows` sessions with 4 KB keys (some 40 MB over its pages),
    scanned `scans` times by a real worker (one process) whose fleet bounds a listing to
    4 MiB: every scan a protocol error, and the worker's peak RSS grows by less than 16 MiB
    over its peak after scanning a small gateway first (without the bound: by the listing)."""
    started = time.monotonic()
    row = Row("25. oversized listings (max_listing_bytes 4 MiB)")
    with Cluster(root, scan_interval="3600s") as c:
        big = c.gateway("big", "2026.9.6")
        small = c.gateway("small", "2026.9.6")
        for i in range(50):
            small.add_idle(f"agent:main:s{i}", age_s=30)
        pad = "x" * 4000
        for i in range(rows):
            big.add_idle(f"agent:main:{pad}{i}", age_s=30)
        c.write_fleet(defaults="max_listing_bytes = 4194304")
        worker = c.start_worker("w", concurrency=1)
        with _client(c) as app:
            # the small scan warms imports, pools and the engine: the baseline
            app.send_task("supervisor.scan_gateway", args=["small"], queue="scan").get(timeout=120)
            baseline = _peak_rss(worker)
            for i in range(1, scans + 1):
                result = app.send_task("supervisor.scan_gateway", args=["big"], queue="scan")
                out: dict[str, Any] = result.get(timeout=300)
                row.runs += 1
                ok = out.get("outcome") == "error" and "max_listing_bytes" in str(out.get("error"))
                row.survived += ok
                if not ok:
                    row.problems.append(f"scan {i}: {str(out)[:300]}")
            peak = _peak_rss(worker)
        growth = peak - baseline
        listing = rows * (len(pad) + 400)
        bound = 16 * 1024 * 1024  # measured: +2 MiB with the bound, +51 MiB without
        if growth > bound:
            row.problems.append(f"peak RSS grew {growth / 2**20:.0f} MiB (bound {bound >> 20})")
            row.survived = 0
        row.notes.append(
            f"listing ~{listing / 2**20:.0f} MiB, {row.survived}/{scans} scans protocol errors; "
            f"worker peak RSS {peak / 2**20:.0f} MiB, "
            f"{growth / 2**20:+.0f} MiB after the small scan"
        )
        tally(row, [big, small], c.audit(), None)
        hits = c.leak_hits()
        row.leaks, row.problems = len(hits), row.problems + hits
    row.seconds = time.monotonic() - started
    return row

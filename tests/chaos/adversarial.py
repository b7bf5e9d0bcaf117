"""Adversarial timing (issue 11), inline against a real valkey and the simulator: a user's message
at each point between the final read and the request, a holder paused past its lease, Redis
paused mid-step, a session that dies again after every heal, rows shifting between pages.

Counted by what the simulated gateways received (the oracle), not by what the supervisor says.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from supervisor import failpoints
from supervisor.recovery.runtime import run_ladder
from supervisor.recovery.scanner import Scanner
from supervisor.recovery.steps import Steps
from supervisor.simulator import SimGateway
from tests.chaos.common import new_key
from tests.chaos.harness import Cluster
from tests.chaos.inline import _finish, start_attempt
from tests.chaos.oracle import Row

VERSIONS = ("2026.9.6", "2026.3.24")


@contextmanager
def at_point(hooks: dict[tuple[str, str], Callable[[str | None], None]]) -> Iterator[None]:
    """Run a hook where a step reaches a failpoint (in this process, instead of dying)."""
    real = failpoints.hit
    lock = threading.Lock()

    def hit(name: str, step: str | None = None, tag: str | None = None) -> None:
        with lock:
            hook = hooks.get((name, step or ""))
        if hook is not None:
            hook(tag)
        real(name, step, tag)

    with mock.patch.object(failpoints, "hit", hit):
        yield


def _send(c: Cluster, gw: Any, key: str) -> None:
    """A user's message (past the oracle's counter: it is not the supervisor's mutation)."""
    params = {"key": key, "message": "are you there?"}
    c.sim.call(SimGateway.handle, gw, "sessions.send", params, ["operator.write"])


# -- 17. a user's message between the final read and the request -------------------------------


def act_window_messages(root: Path, runs: int) -> Row:
    """Each run: a zombie; a user's message lands at one point between the final read and the
    request (after the read; after the ladder said send), at the abort or the reset, on either
    version. Every collision the gateway saw must be reported `collided`; none called healed."""
    started = time.monotonic()
    row = Row("17. user message between final read and request")
    collisions = reported = healed = 0
    with Cluster(root) as c:
        gws = [c.gateway("v4", VERSIONS[0]), c.gateway("v3", VERSIONS[1])]
        c.write_fleet()
        engine = c.engine()
        for i in range(runs):
            gw = gws[i % 2]
            step = ("abort", "reset")[(i // 2) % 2]
            point = ("after_reread", "before_send")[(i // 4) % 2]
            key = new_key("msg")
            c.sim.call(gw.add_zombie, key)
            fired: list[bool] = []

            def inject(
                tag: str | None, gw: Any = gw, key: str = key, fired: list[bool] = fired
            ) -> None:
                if tag == f"{gw.name}/{key}" and not fired:
                    fired.append(True)
                    _send(c, gw, key)

            with at_point({(point, step): inject}):
                actions = run_ladder(engine, gw.name, only_key=key)
            mine = [a for a in actions if a.key == key]
            hit = [a for a in gw.acts if a.key == key and a.live_before]
            said_collided = any(a.outcome == "collided" for a in mine)
            said_healed = any(a.outcome == "healed" for a in mine)
            collisions += bool(hit)
            reported += said_collided
            healed += bool(hit) and said_healed
            row.runs += 1
            if (
                fired
                and (bool(hit) == said_collided or said_collided)
                and not (hit and said_healed)
            ):
                row.survived += 1
            else:
                row.problems.append(
                    f"run {i} ({gw.version.value} {step} {point}): fired {bool(fired)}, "
                    f"collision {bool(hit)}, reported {said_collided}, healed {said_healed}: "
                    + ", ".join(f"{a.step}={a.outcome}" for a in mine)
                )
            c.sim.call(gw.drop, key)
        pages = c.pages.triggers() if c.pages else {}
        collided_pages = sum(n for k, n in pages.items() if "/collided/" in k)
        row.notes.append(
            f"{collisions} collisions the gateways saw, {reported} reported collided, "
            f"{healed} called healed; {collided_pages} collision pages"
        )
        # a collision is, by definition, a mutation on a session with a run (the residual
        # window no fence closes): the oracle's "wrong action" here is one nobody reported
        result = _finish(row, c, gws, started)
        result.wrong = max(0, collisions - reported)
        result.problems = [p for p in result.problems if not p.startswith("wrong action")]
        return result


# -- 18. a holder paused past its lease, or past the act window --------------------------------


def paused_holders(root: Path, runs: int, ttl_s: float = 1.0) -> Row:
    """Each run: a holder with a `ttl_s` lease pauses after its lease check (past the TTL) or
    after its final read (past act_window) while the session stays a zombie: it never sends."""
    started = time.monotonic()
    row = Row("18. holder paused past its lease or act window")
    late = 0
    with Cluster(root) as c:
        gws = [c.gateway("v4", VERSIONS[0]), c.gateway("v3", VERSIONS[1])]
        c.write_fleet(defaults='act_window = "0.1s"')
        engine = c.engine(lease_ttl_s=ttl_s)
        outcomes: dict[str, int] = {}
        for i in range(runs):
            gw = gws[i % 2]
            key = new_key("pause")
            c.sim.call(gw.add_zombie, key)
            first = start_attempt(engine, gw, key)
            if first is None:
                row.runs += 1
                row.problems.append(f"run {i}: no attempt")
                continue
            point, pause = (("after_lease", ttl_s * 1.1), ("after_reread", 0.15))[(i // 2) % 2]
            with at_point({(point, first.step.value): lambda _tag, p=pause: time.sleep(p)}):
                result = Steps(engine).run(first.step, first.ref)
            sent = [a for a in gw.acts if a.key == key]
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
            late += len(sent)
            row.runs += 1
            if not sent and result.outcome in ("lease_lost", "stale_read"):
                row.survived += 1
            else:
                row.problems.append(f"run {i}: {result.outcome}, {len(sent)} sent")
            c.sim.call(gw.drop, key)
        row.notes.append(
            f"{late} late sends; outcomes "
            + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        )
        return _finish(row, c, gws, started)


# -- 19. Redis paused mid-step -------------------------------------------------------------------


def redis_paused(root: Path, runs: int, pause_ms: int = 400) -> Row:
    """Each run: `CLIENT PAUSE` on the server at one of the step's Redis round trips (claim,
    lease) while it heals a zombie: the request still goes out within act_window of its read."""
    started = time.monotonic()
    row = Row("19. Redis paused (CLIENT PAUSE) mid-step")
    worst = 0.0
    with Cluster(root) as c:
        gws = [c.gateway("v4", VERSIONS[0]), c.gateway("v3", VERSIONS[1])]
        c.write_fleet()
        engine = c.engine()
        for i in range(runs):
            gw = gws[i % 2]
            key = new_key("pause")
            c.sim.call(gw.add_zombie, key)
            point = ("after_claim", "after_lease")[(i // 2) % 2]

            def pause(_tag: str | None) -> None:
                c.store.client.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")

            with at_point({(point, "abort"): pause, (point, "reset"): pause}):
                actions = run_ladder(engine, gw.name, only_key=key)
            records = [
                r for r in c.audit()
                if r.key == key and r.read_to_send_ms is not None and r.outcome != "sending"
            ]  # fmt: skip
            windows = [r.read_to_send_ms for r in records if r.read_to_send_ms is not None]
            worst = max([worst, *windows])
            healed = any(a.key == key and a.outcome == "healed" for a in actions)
            row.runs += 1
            if healed and windows and max(windows) <= 250:
                row.survived += 1
            else:
                row.problems.append(f"run {i}: healed {healed}, read-to-send ms {windows}")
            c.sim.call(gw.drop, key)
        row.notes.append(f"Redis paused {pause_ms} ms per step; worst read-to-send {worst:.1f} ms")
        return _finish(row, c, gws, started)


# -- 20. a session that dies again after every heal -----------------------------------------------


def flapping(root: Path, cycles: int) -> Row:
    """One session per version dies again after every heal, `cycles` times: at most
    max_heals_per_session (3) resets and exactly one page per window."""
    started = time.monotonic()
    row = Row(f"20. session re-dying after each heal, {cycles} cycles")
    with Cluster(root) as c:
        gws = [c.gateway("v4", VERSIONS[0]), c.gateway("v3", VERSIONS[1])]
        c.write_fleet()
        engine = c.engine()
        for gw in gws:
            key = new_key("flap")
            for _ in range(cycles):
                c.sim.call(gw.add_zombie, key)
                run_ladder(engine, gw.name)
            resets = sum(1 for a in gw.acts if a.key == key and a.method == "sessions.reset")
            pages = c.pages.triggers().get(f"{gw.name}/{key}", 0) if c.pages else 0
            row.runs += 1
            if resets <= 3 and pages == 1:
                row.survived += 1
            else:
                row.problems.append(f"{gw.name}: {resets} resets, {pages} pages")
            row.notes.append(f"{gw.version.value}: {resets} resets, {pages} page")
        return _finish(row, c, gws, started)


# -- 21. rows shifting between the pages of a listing --------------------------------------------


def shifting_pages(root: Path, runs: int) -> Row:
    """Each run: an escalated zombie is the first row of page two of a 2026.9.6 listing; the
    first row of page one is deleted while page one is served, so that listing skips the
    zombie. It must never be closed, nor its incident resolved, on that listing's word."""
    from supervisor.recovery.closing import close_episode

    started = time.monotonic()
    row = Row("21. rows shifting between listing pages")
    false = 0
    with Cluster(root, defaults="max_attempts = 1") as c:
        gw = c.gateway("v4", VERSIONS[0])
        for j in range(99):
            c.sim.call(gw.add_idle, f"agent:main:b{j:03d}")
        c.write_fleet()
        engine = c.engine()
        real_list, real_reset = gw._list, gw._reset
        for i in range(runs):
            key, victim = f"agent:main:c{i:05d}", "agent:main:a-victim"
            c.sim.call(gw.add_zombie, key)
            # escalate it: a reset that answers ok and changes nothing (openclaw #126836)
            gw._reset = lambda params, scopes: {"ok": True, "key": params["key"]}  # type: ignore[method-assign]
            run_ladder(engine, gw.name, only_key=key)
            run_ladder(engine, gw.name, only_key=key)
            gw._reset = real_reset  # type: ignore[method-assign]
            escalated = c.pages.triggers().get(f"{gw.name}/{key}", 0) if c.pages else 0
            c.sim.call(gw.add_idle, victim)  # rows: victim, b000..b098, then the zombie (100)

            def shifting(params: dict[str, Any], scopes: list[str], victim: str = victim) -> Any:
                page = real_list(params, scopes)
                if not params.get("offset"):
                    gw.sessions.pop(victim, None)
                return page

            gw._list = shifting  # type: ignore[method-assign]
            actions = Scanner(engine).scan(gw.name).actions
            gw._list = real_list  # type: ignore[method-assign]
            closed = any(a.key == key and a.outcome == "healed" for a in actions)
            still_open = key in c.store.episodes.open_episodes(gw.name)
            resolved = c.pages.resolves().get(f"{gw.name}/{key}", 0) if c.pages else 0
            false += closed
            row.runs += 1
            if escalated == 1 and not closed and still_open and not resolved:
                row.survived += 1
            else:
                row.problems.append(
                    f"run {i}: escalated {escalated}, closed {closed}, open {still_open}, "
                    f"resolved {resolved}"
                )
            c.sim.call(gw.drop, key)
            close_episode(engine, gw.name, key, None, healed=False, forget_budget=True)
        row.notes.append(f"{false} false heals, 0 resolves before the operator's clear")
        return _finish(row, c, [gw], started)

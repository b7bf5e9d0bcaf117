"""Safety under adversarial timing, inline against the simulator and a real Redis (issue 11).

Each test attacks one guarantee at the point where it could break (a user's message between
the final read and the request, a holder paused past its lease, a session that dies again after
every heal, rows shifting between pages) and counts what the gateway received.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest

from supervisor import failpoints
from supervisor.core.ladder import Step
from supervisor.recovery.closing import close_episode
from supervisor.recovery.runtime import run_ladder
from supervisor.recovery.scanner import Scanner
from supervisor.recovery.steps import Steps
from tests.recovery.conftest import Rig

VERSIONS = ["2026.9.6", "2026.3.24"]
KEY = "agent:main:z"


@contextmanager
def at_point(point: str, step: str, do: Callable[[], None], times: int = 1) -> Iterator[None]:
    """Run `do` when a step reaches a failpoint (in-process: instead of dying there)."""
    left = [times]
    real = failpoints.hit

    def hit(name: str, step_name: str | None = None, tag: str | None = None) -> None:
        if name == point and step_name == step and left[0] > 0:
            left[0] -= 1
            do()
        real(name, step_name, tag)

    with mock.patch.object(failpoints, "hit", hit):
        yield


def send_message(rig: Rig, gw: Any, text: str = "hello?") -> Callable[[], None]:
    return lambda: rig.sim.call(
        gw.handle, "sessions.send", {"key": KEY, "message": text}, ["operator.write"]
    )


def outcomes(actions: list[Any]) -> list[tuple[str, str]]:
    return [(a.step, a.outcome) for a in actions if a.key == KEY]


# -- 1. a user's message between the final read and the request --------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("step", ["abort", "reset"])
def test_a_message_in_the_act_window_is_reported_collided_never_healed(
    rig: Rig, version: str, step: str
) -> None:
    gw = rig.gateway("gw", version)
    gw.add_zombie(KEY)
    with at_point("after_reread", step, send_message(rig, gw)):
        actions = run_ladder(rig.engine(), "gw")
    steps = outcomes(actions)
    assert (step, "collided") in steps, steps
    assert ("verify", "healed") not in steps
    assert [kind for _, kind in rig.pager.triggers] == ["collided"]
    audit = rig.store.audit.read(200)
    assert not any(r.outcome == "healed" for r in audit)
    assert any(r.outcome == "collided" and r.step == step for r in audit)
    # the episode is closed (nothing left to be called healed later), the lease released
    assert rig.store.episodes.open_episodes("gw") == {}
    assert rig.store.leases.holder("gw", KEY) is None
    if step == "abort":
        # nothing was reset over the user's message
        assert gw.mutation_count(KEY, "sessions.reset") == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_a_message_after_the_request_is_no_collision(rig: Rig, version: str) -> None:
    gw = rig.gateway("gw", version)
    gw.add_zombie(KEY)
    with at_point("after_act", "reset", send_message(rig, gw)):
        actions = run_ladder(rig.engine(), "gw")
    assert ("verify", "healed") in outcomes(actions)
    assert rig.pager.triggers == []


def test_without_the_event_witness_the_collision_would_be_called_healed(rig: Rig) -> None:
    """The attack works: with collision detection off, the same run reports `healed`."""
    gw = rig.gateway("gw", "2026.3.24")
    gw.add_zombie(KEY)
    with (
        at_point("after_reread", "reset", send_message(rig, gw)),
        mock.patch(
            "supervisor.gateway.client.GatewayClient.runs_started_since", lambda *_, **__: []
        ),
    ):
        actions = run_ladder(rig.engine(), "gw")
    assert ("verify", "healed") in outcomes(actions)


# -- 2. a holder paused past its lease, or past the act window ---------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_a_holder_paused_after_its_lease_check_never_sends(rig: Rig, version: str) -> None:
    gw = rig.gateway("gw", version)
    gw.add_zombie(KEY)
    engine = rig.engine(lease_ttl_s=1.0)
    (first,) = Scanner(engine).scan("gw").starts
    with at_point("after_lease", "abort", lambda: time.sleep(1.1)):
        result = Steps(engine).run(first.step, first.ref)
    assert result.outcome == "lease_lost", result
    assert gw.mutations == []


@pytest.mark.parametrize("version", VERSIONS)
def test_a_step_paused_after_its_final_read_does_not_send(rig: Rig, version: str) -> None:
    gw = rig.gateway("gw", version)
    gw.add_zombie(KEY)
    engine = rig.engine('act_window = "0.2s"\n')
    (first,) = Scanner(engine).scan("gw").starts
    with at_point("after_reread", "abort", lambda: time.sleep(0.3)):
        result = Steps(engine).run(first.step, first.ref)
    assert result.outcome == "stale_read"
    assert gw.mutations == []
    # the next scan decides again, from a fresh read, and heals it
    assert ("verify", "healed") in outcomes(run_ladder(engine, "gw"))


def test_a_paused_holder_does_not_undo_the_next_holders_work(rig: Rig) -> None:
    """A pauses 1.2 s holding a 1 s lease; B runs a whole attempt and heals; a user starts a
    run; A resumes: it must not reset (the reproduced `reset(B) -> send -> reset(A)`)."""
    gw = rig.gateway("gw", "2026.3.24")
    gw.add_zombie(KEY)
    a = rig.engine(lease_ttl_s=1.0)
    (first,) = Scanner(a).scan("gw").starts
    abort = Steps(a).run(first.step, first.ref)
    assert abort.next is not None and abort.next.step is Step.RESET

    b_saw: list[tuple[str, str]] = []

    def b_heals_then_user_writes() -> None:
        time.sleep(1.1)
        # B is another worker: its own thread and event loop
        b = threading.Thread(target=lambda: b_saw.extend(outcomes(run_ladder(rig.engine(), "gw"))))
        b.start()
        b.join()
        send_message(rig, gw)()

    with at_point("after_claim", "reset", b_heals_then_user_writes):
        late = Steps(a).run(abort.next.step, abort.next.ref)
    assert ("verify", "healed") in b_saw
    assert late.outcome == "lease_lost"
    assert gw.mutation_count(KEY, "sessions.reset") == 1  # B's only
    assert gw.sessions[KEY].live_run is not None  # the user's run lives


def test_a_paused_redis_before_the_final_read_does_not_widen_the_window(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6")
    gw.add_zombie(KEY)
    engine = rig.engine()
    (first,) = Scanner(engine).scan("gw").starts
    pause = lambda: rig.store.client.execute_command("CLIENT", "PAUSE", 600, "WRITE")  # noqa: E731
    with at_point("after_claim", "abort", pause):
        result = Steps(engine).run(first.step, first.ref)
    assert result.outcome == "no_active_run"
    sent = [r for r in rig.store.audit.read(50) if r.step == "abort" and r.read_to_send_ms]
    assert sent and sent[-1].read_to_send_ms is not None and sent[-1].read_to_send_ms < 250


# -- 3. a session that dies again after every heal ----------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_a_session_dying_after_every_heal_is_reset_at_most_three_times_and_paged_once(
    rig: Rig, version: str
) -> None:
    gw = rig.gateway("gw", version)
    engine = rig.engine()
    for _ in range(10):
        gw.add_zombie(KEY)  # dies again, as a real one killed while it runs (new sessionId)
        run_ladder(engine, "gw")
    assert gw.mutation_count(KEY, "sessions.reset") == 3
    assert [kind for _, kind in rig.pager.triggers] == ["flapping"]
    # `clear` lifts it: the operator vouches, the incident resolves, recovery resumes
    episode = rig.store.episodes.open_episodes("gw")[KEY]
    assert close_episode(engine, "gw", KEY, episode.session_id, healed=False, forget_budget=True)
    assert rig.pager.resolves == ["gw/" + KEY]
    run_ladder(engine, "gw")
    assert gw.mutation_count(KEY, "sessions.reset") == 4


def test_the_gateway_budget_stops_resets_on_a_gateway_for_the_hour(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6")
    engine = rig.engine("max_heals_per_gateway_hour = 3\nzombie_breaker_share = 1\n")
    for i in range(5):
        gw.add_zombie(f"agent:main:z{i}")
    run_ladder(engine, "gw")
    run_ladder(engine, "gw")
    assert gw.mutation_count(method="sessions.reset") == 3
    assert [kind for _, kind in rig.pager.triggers] == ["flapping"]


# -- 4. rows shifting between pages --------------------------------------------------------------


def test_a_session_skipped_by_a_shifting_listing_is_not_closed(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6")
    for i in range(150):
        gw.add_idle(f"agent:main:a{i:03d}")
    gw.add_zombie("agent:main:a100x")  # row 101: the first of page two
    engine = rig.engine("max_attempts = 1\n")
    gw.fault_reset = True  # type: ignore[attr-defined]
    # escalate it: a reset that changes nothing (openclaw #126836), once
    real_reset = gw._reset
    gw._reset = lambda params, scopes: {"ok": True, "key": params["key"]}  # type: ignore[method-assign]
    run_ladder(engine, "gw")
    run_ladder(engine, "gw")
    assert [kind for _, kind in rig.pager.triggers] == ["escalated"]
    gw._reset = real_reset  # type: ignore[method-assign]
    # now a session on page one is deleted between the two pages of the next listing
    real_list = gw._list

    def shifting(params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        page = real_list(params, scopes)
        if not params.get("offset") and "agent:main:a000" in gw.sessions:
            del gw.sessions["agent:main:a000"]
        return page

    gw._list = shifting  # type: ignore[method-assign]
    actions = Scanner(engine).scan("gw").actions
    assert not any(a.key == "agent:main:a100x" and a.outcome == "healed" for a in actions)
    assert rig.pager.resolves == []
    assert "agent:main:a100x" in rig.store.episodes.open_episodes("gw")


# -- 5. a reset that answers ok and changes nothing ----------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_a_reset_that_changes_nothing_ends_ineffective_and_escalates_at_once(
    rig: Rig, version: str
) -> None:
    from supervisor.simulator import FaultMode

    gw = rig.gateway("gw", version)
    gw.add_zombie(KEY)
    gw.fault = FaultMode.RESET_NOOP
    engine = rig.engine()
    steps = outcomes(run_ladder(engine, "gw"))
    assert ("verify", "ineffective") in steps and ("escalate", "escalated") in steps, steps
    assert [kind for _, kind in rig.pager.triggers] == ["escalated"]
    assert gw.mutation_count(KEY, "sessions.reset") == 1  # not tried again and again
    assert rig.store.leases.holder("gw", KEY) is None
    for _ in range(3):
        run_ladder(engine, "gw")
    assert gw.mutation_count(KEY, "sessions.reset") == 1
    assert len(rig.pager.triggers) == 1

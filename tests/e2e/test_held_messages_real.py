"""Users write to zombies on real 2026.9.6: each is answered once, or told unanswered, never lost.

The scene: three runs hung on the model, the gateway SIGKILLed and started again. 2026.9.6
replays the first interrupted session (a live run, hung again on the fake model) and a user
writes to each of the other two. What the gateway does with such a message varies (measured on
this machine, 2026-12-02): it holds it (`held`: its run id in `activeRunIds`, the text in
`chat.history`'s `pendingInputs`, `queued`) for 0.5-4 s and then starts its own replay of that
session (a live run, the message queued behind it); once the row kept the zombie shape
(`activeRunIds: []`) while the message waited. A reset throws a waiting message away
(`interrupted`, never answered). The supervisor heals at once (in this process: the CLI's
start-up alone outlasts the hold), so it meets whichever shape the gateway shows:
* where it reset the lane, `redeliver` sent the user's message again after verify, and
  `report` says whose message was dropped and since when, and that message never runs;
* where the gateway's replay had begun (its final read finds a live run: `changed`), nothing
  is touched;
* either way, with `redeliver` every user's message ends answered, exactly once.
Each run prints which path each session took.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from supervisor.recovery.context import Engine, FleetSource
from supervisor.recovery.runtime import run_ladder
from supervisor.state import StateStore
from supervisor.status import gateway_status
from tests.e2e.cli import write_fleet
from tests.e2e.common import HarnessError
from tests.e2e.factory import GatewayFactory
from tests.e2e.recipes import RealGateway
from tests.e2e.rows import send_message

pytestmark = pytest.mark.e2e

#: what changes a session: an abort that stopped a run, a reset that cleared the lane, a
#: redelivery (an abort answered `no-active-run` and a step that found the row changed and
#: sent nothing change nothing)
MUTATIONS = {("abort", "aborted"), ("reset", "reset"), ("reset", "new_sent")}


def was_reset(actions: list[Any]) -> bool:
    return any((a["step"], a["outcome"]) in MUTATIONS - {("abort", "aborted")} for a in actions)


def untouched(actions: list[Any]) -> bool:
    return not any(
        (a["step"], a["outcome"]) in MUTATIONS or a["step"] == "redeliver" for a in actions
    )


def held_scene(gateway: RealGateway) -> dict[str, str]:
    """Two zombies, a user's message sent to each and accepted: session key -> the text."""
    outcome = gateway.make_zombies("a-replayed", "b-zombie", "c-zombie")
    texts = {key: f"[{key}] hello? I wrote while you were down" for key in outcome.zombies}

    async def users_write() -> None:
        async with gateway.client() as client:
            for key, text in texts.items():
                await send_message(client, key, text)

    gateway._run(users_write())
    # No wait here: on this machine 2026.9.6 held such a message for 1-4 s, then started its
    # own replay of the session (a live run, hung again on the fake model, the message queued
    # behind it); `heal` right away meets either. The model keeps hanging what carries the
    # marker (the interrupted turns); the users' texts carry none, so whatever runs them gets
    # an answer.
    return texts


def _pending_state(gateway: RealGateway, key: str, text: str) -> str | None:
    payload = gateway.call("chat.history", {"sessionKey": key})
    items = (payload.get("pendingInputs") or {}).get("items") or []
    states = [i.get("state") for i in items if text in str(i.get("message"))]
    return str(states[0]) if states else None


def _transcript(gateway: RealGateway, key: str) -> list[dict[str, Any]]:
    payload = gateway.call("chat.history", {"sessionKey": key, "limit": 50})
    return [m for m in payload.get("messages") or [] if isinstance(m, dict)]


def _answered_once(gateway: RealGateway, key: str, text: str) -> bool:
    said = _transcript(gateway, key)
    mine = [i for i, m in enumerate(said) if m.get("role") == "user" and m.get("content") == text]
    if len(mine) > 1:
        raise AssertionError(f"{key}: the user's message ran {len(mine)} times: {said}")
    return bool(mine) and any(m.get("role") == "assistant" for m in said[mine[0] + 1 :])


def _until(predicate: Any, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.5)


def heal(
    gateway: RealGateway, store: StateStore, tmp_path: Path, mode: str
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """The supervisor's own scan and ladder, in this process (the CLI's start-up alone can
    outlast the seconds a message is held), on the test session's real valkey."""
    fleet = write_fleet(
        tmp_path / "fleet",
        [gateway],
        defaults={"stale_after": "0s", "held_after": "0s", "held_messages": mode},
    )
    engine = Engine(
        FleetSource(fleet).get, store, gateway.identity, lease_ttl_s=60, verify_delay_s=0.5
    )
    by_key: dict[str, list[Any]] = {}
    for result in run_ladder(engine, gateway.name):
        if result.key:
            by_key.setdefault(result.key, []).append(result.action())
    (status,) = gateway_status(store, [gateway.name])
    return by_key, status


def steps_of(actions: list[Any]) -> list[tuple[str, str]]:
    return [(a["step"], a["outcome"]) for a in actions]


def release(gateway: RealGateway) -> None:
    """Let every hung turn finish, the way a model that recovers would."""
    gateway.model.hang_enabled = False
    gateway.model.release_hung()


def test_redeliver_gets_every_users_message_answered_once(
    real_gateways: GatewayFactory, store: StateStore, tmp_path: Path
) -> None:
    gateway = real_gateways("2026.9.6")
    try:
        texts = held_scene(gateway)
        actions, status = heal(gateway, store, tmp_path, "redeliver")
        reset = [k for k in texts if was_reset(actions.get(k, []))]
        for key in texts:
            steps = steps_of(actions.get(key, []))
            if key in reset:
                # redelivered; or, under load, the gateway ran it after all (not lost: healed)
                assert steps[-3:-1] == [("reset", "reset"), ("verify", "healed")], (key, steps)
                assert steps[-1] in (("redeliver", "redelivered"), ("redeliver", "healed")), steps
            else:
                assert untouched(actions.get(key, [])), (key, steps)  # a live replay
        redelivered = sum(steps_of(actions[k])[-1] == ("redeliver", "redelivered") for k in reset)
        assert status["messages_redelivered_24h"] == redelivered, status
        print(
            f"paths: reset+redelivered {len(reset)}, left to the gateway {len(texts) - len(reset)}"
        )
        release(gateway)
        for key, text in texts.items():
            _until(lambda k=key, t=text: _answered_once(gateway, k, t), f"{key} answered")
    finally:
        gateway.stop()


def test_report_says_whose_message_the_reset_dropped_and_since_when(
    real_gateways: GatewayFactory, store: StateStore, tmp_path: Path
) -> None:
    gateway = real_gateways("2026.9.6")
    try:
        texts = held_scene(gateway)
        actions, status = heal(gateway, store, tmp_path, "report")
        reset = [k for k in texts if was_reset(actions.get(k, []))]
        for key in texts:
            mine = actions.get(key, [])
            if key not in reset:
                assert untouched(mine), (key, steps_of(mine))
                continue
            detail = next(a["detail"] for a in mine if a["step"] == "reset")
            assert "dropped 1 message(s)" in detail and "waiting since 20" in detail, detail
            assert steps_of(mine)[-1] == ("verify", "healed"), steps_of(mine)
            assert _pending_state(gateway, key, texts[key]) == "interrupted"
        assert status["messages_dropped_24h"] == len(reset), status
        assert {d["key"] for d in status["messages_dropped"]} == set(reset), status
        print(f"paths: reset+reported {len(reset)}, left to the gateway {len(texts) - len(reset)}")
        print("steps:", {k: steps_of(v) for k, v in actions.items()})
        release(gateway)
        for key in (k for k in texts if k not in reset):
            _until(lambda k=key: _answered_once(gateway, k, texts[k]), f"{key} answered")
        # the report is true: the gateway never runs a dropped message
        for key in reset:
            assert all(texts[key] not in str(m.get("content")) for m in _transcript(gateway, key))
    finally:
        gateway.stop()

"""A user's message inside the act window, on real gateways: reported `collided`, never healed.

Between the supervisor's final read and the gateway handling its reset, a WebSocket proxy
holds the reset back while a user's message is sent on another connection and the gateway
shows it in the row; then the reset goes on and destroys that message's run (2026.3.24) or
drops it while it waits behind the dead lane (2026.9.6). The supervisor cannot stop that (no
request parameter fences a reset against a run that started since the read): it must see the
run on its own socket and report it. The other zombie, not held, heals as usual.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cli import run_supervisor, write_fleet
from tests.e2e.common import RESTART_ZOMBIE_LINES
from tests.e2e.factory import GatewayFactory
from tests.e2e.recipes import RealGateway
from tests.e2e.ws_proxy import HoldingProxy

pytestmark = pytest.mark.e2e


def collide(
    gateway: RealGateway, tmp_path: Path, defaults: dict[str, str]
) -> tuple[str, str, str, dict[str, list[tuple[str, str]]], Path]:
    """The scene: `heal` through a proxy that holds the target's reset until a user's message
    shows in its row. Returns (target, other, the user's text, steps by key, fleet file)."""
    # three: on 2026.9.6 the first in key order is replayed (a live run), the rest zombies
    outcome = gateway.make_zombies("window-0", "window-1", "window-2")
    target, other = outcome.zombies[0], outcome.zombies[-1]
    assert target != other, outcome
    before = gateway.rows()[target]
    text = f"[{target}] still there?"

    def user_writes(frame: dict[str, Any]) -> None:
        gateway.call("sessions.send", {"key": target, "message": text})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = gateway.rows()[target]
            changed = row.get("startedAt") != before.get("startedAt") or row.get(
                "activeRunIds"
            ) != before.get("activeRunIds")
            if changed or row.get("hasActiveRun"):
                return
            time.sleep(0.1)
        raise AssertionError(f"the user's message never showed in {target}'s row")

    def is_reset_of_target(frame: dict[str, Any]) -> bool:
        params = frame.get("params") or {}
        return frame.get("method") == "sessions.reset" and params.get("key") == target

    proxy = HoldingProxy(gateway.url, is_reset_of_target, user_writes)
    with proxy.running():
        # the held reset waits for the user's message to show: on a loaded machine that
        # takes seconds, which the reset's answer must be allowed
        fleet = write_fleet(
            tmp_path / "fleet", [gateway], defaults={"stale_after": "0s", "call_timeout": "60s",
                                                     **defaults},
        )  # fmt: skip
        fleet.write_text(fleet.read_text().replace(gateway.url, proxy.url))
        run = run_supervisor(
            "heal", "--fleet", str(fleet), "--json", state_dir=tmp_path / "state",
            env={"SUPERVISOR_VERIFY_DELAY_S": "0.5"}, timeout=180,
        )  # fmt: skip
    doc = run.json()
    assert proxy.held, "the reset never reached the proxy"
    done: dict[str, list[tuple[str, str]]] = {}
    for action in doc["actions"]:
        if action["key"]:
            done.setdefault(action["key"], []).append((action["step"], action["outcome"]))
    return target, other, text, done, fleet


@pytest.mark.parametrize("version", RESTART_ZOMBIE_LINES)
def test_a_message_sent_while_the_reset_is_held_is_reported_collided(
    version: str, real_gateways: GatewayFactory, tmp_path: Path
) -> None:
    gateway = real_gateways(version)
    try:
        target, other, _, done, fleet = collide(gateway, tmp_path, {})
        assert ("reset", "collided") in done[target], done[target]
        assert ("verify", "healed") not in done[target], done[target]
        assert ("verify", "healed") in done[other], done[other]
        audit = run_supervisor(
            "audit", "--json", "-n", "500", state_dir=tmp_path / "state",
            env={"SUPERVISOR_FLEET": str(fleet)},
        )  # fmt: skip
        records = json.loads(audit.stdout)["records"]
        windows = [r["read_to_send_ms"] for r in records if r.get("read_to_send_ms") is not None]
        assert windows and max(windows) < 250, windows
        print(f"{version}: read-to-send ms {sorted(windows)}")  # the README's measured window
    finally:
        gateway.stop()


def test_redeliver_answers_the_message_that_raced_the_reset_on_2026_9_6(
    real_gateways: GatewayFactory, tmp_path: Path
) -> None:
    """The same race with `held_messages = "redeliver"`: the reset still drops the user's
    message (nothing can fence it), but the gateway lists it `interrupted`, so after verify the
    supervisor sends it again, and the user's own words get their answer, once."""
    gateway = real_gateways("2026.9.6")
    try:
        target, other, text, done, _ = collide(gateway, tmp_path, {"held_messages": "redeliver"})
        steps = done[target]
        assert ("reset", "collided") in steps, steps
        assert ("verify", "healed") in done[other], done[other]
        # the usual path: the reset dropped it, verify healed, redeliver gave it back; under
        # load the gateway's own replay may have taken the message first (then redeliver
        # finds it not lost, or verify finds the lane busy and the collision is paged)
        given_back = steps[-3:] == [
            ("reset", "collided"), ("verify", "healed"), ("redeliver", "redelivered"),
        ]  # fmt: skip
        print(f"path: {'redelivered' if given_back else 'left to the gateway'}: {steps}")
        gateway.model.hang_enabled = False
        gateway.model.release_hung()
        deadline = time.monotonic() + 180
        while True:
            payload = gateway.call("chat.history", {"sessionKey": target, "limit": 50})
            said = payload["messages"]
            mine = [i for i, m in enumerate(said) if m.get("role") == "user"
                    and m.get("content") == text]  # fmt: skip
            assert len(mine) <= 1, said  # never twice
            if mine and any(m.get("role") == "assistant" for m in said[mine[0] + 1 :]):
                break
            if not given_back and steps[-1][1] == "collided":
                # not given back: then reported (the collision page), never silently lost
                items = (payload.get("pendingInputs") or {}).get("items") or []
                lost = [i for i in items if text in str(i.get("message"))
                        and i.get("state") == "interrupted"]  # fmt: skip
                if lost:
                    break
            assert time.monotonic() < deadline, f"{target} never answered: {said}"
            time.sleep(0.5)
    finally:
        gateway.stop()

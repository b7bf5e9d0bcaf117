"""A session whose restart recovery gave up, on real 2026.9.6 (the 9.x line of openclaw #146692).

Reproduced here: three replays of an interrupted turn, each killed by a crash before its turn
started, and the next boot tombstones the session. Its row then looks finished (`failed`,
nothing active) but carries `restartRecoveryStatus: "tombstoned"`, and the gateway refuses every
turn to it ("ended during restart recovery. Use /new or /reset"): the user is silent for good.
`check` must call it a zombie, `heal` must reset it, and the next message must get its answer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from supervisor.errors import GatewayCallError
from tests.e2e.cli import run_supervisor, write_fleet
from tests.e2e.factory import GatewayFactory
from tests.e2e.recipes import RealGateway
from tests.e2e.test_heal_real import answered

pytestmark = pytest.mark.e2e

REFUSAL = "ended during restart recovery. Use /new or /reset"


def refusals(gateway: RealGateway, key: str) -> dict[str, str]:
    """What each way of sending a turn answers (the error message, or "accepted")."""

    async def go() -> dict[str, str]:
        out: dict[str, str] = {}
        async with gateway.client() as client:
            for method, params in (
                ("sessions.send", {"key": key, "message": f"[{key}] anyone there?"}),
                ("chat.send", {"sessionKey": key, "message": "hello?", "idempotencyKey": "t1"}),
                ("agent", {"sessionKey": key, "message": "hello?", "idempotencyKey": "t2"}),
            ):
                try:
                    await client.call(method, params)
                    out[method] = "accepted"
                except GatewayCallError as exc:
                    out[method] = f"{exc.code}: {exc}"
        return out

    return asyncio.run(go())


def test_a_tombstoned_session_is_a_zombie_heal_resets_it_and_it_answers_again(
    real_gateways: GatewayFactory, tmp_path: Path
) -> None:
    gateway = real_gateways("2026.9.6")
    try:
        key = gateway.make_tombstoned("given-up")
        row = gateway.rows()[key]
        assert row["status"] == "failed", row
        assert row["hasActiveRun"] is False and row["activeRunIds"] == [], row
        assert row["abortedLastRun"] is False, row
        refused = refusals(gateway, key)
        assert all(REFUSAL in answer for answer in refused.values()), refused
        assert all(answer.startswith("INVALID_REQUEST") for answer in refused.values()), refused

        fleet = write_fleet(tmp_path / "fleet", [gateway], defaults={"stale_after": "0s"})
        check = run_supervisor("check", "--fleet", str(fleet), "--json", state_dir=tmp_path / "s1")
        report: dict[str, Any] = check.json()["gateways"][0]
        found = {s["key"]: s for s in report["sessions"]}
        assert found[key]["verdict"] == "zombie", found[key]
        assert "tombstoned" in found[key]["reason"], found[key]

        run = run_supervisor(
            "heal", "--fleet", str(fleet), "--json",
            state_dir=tmp_path / "s2", env={"SUPERVISOR_VERIFY_DELAY_S": "0.5"},
        )  # fmt: skip
        doc = run.json()
        steps = [(a["step"], a["outcome"]) for a in doc["actions"] if a["key"] == key]
        assert run.returncode == 0, (steps, run.stderr[-2000:])
        # nothing runs on it: the abort proves that, then the reset clears the tombstone
        assert steps[:2] == [("abort", "no_active_run"), ("reset", "reset")], steps
        assert ("verify", "healed") in steps, steps
        after = gateway.rows()[key]
        assert "restartRecoveryStatus" not in after and after.get("status") is None, after
        assert after["sessionId"] == row["sessionId"]  # 2026.9.6 keeps the id across a reset

        gateway.model.hang_enabled = False  # the transcript still holds the hung message
        answered(gateway, key, timeout=90)
    finally:
        gateway.stop()

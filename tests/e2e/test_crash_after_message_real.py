"""A gateway crashed seconds after a message (2026.3.24): the run it held is a zombie.

On 2026.3.24 only `startedAt` before the gateway's boot tells a dead run from a live one, and the
boot is derived from hello's `uptimeMs`. Measured with `python -m tests.e2e.measure_boot_margin`
(20 crashes): the killed run's `startedAt` and the derived boot lie 0.2-0.6 s apart when the
crash follows the run's start at once, and the derived boot is never before the kill. So a
`boot_margin` well under a second finds such a zombie; the old default (5 s) called it `live`,
and the session stayed silent until the lane timeout (issue 12 item 7). The default is 0.1 s
now, and this test runs with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.cli import run_supervisor, write_fleet
from tests.e2e.factory import GatewayFactory
from tests.e2e.rows import wait_for_rows

pytestmark = pytest.mark.e2e


def test_a_run_killed_a_second_after_it_started_is_found_and_healed(
    real_gateways: GatewayFactory, tmp_path: Path
) -> None:
    gateway = real_gateways("2026.3.24")
    try:
        outcome = gateway.make_zombies("crashed", age_before_kill=1.0)
        (key,) = outcome.zombies
        boot = gateway.boot_time_ms()
        started = gateway.rows()[key]["startedAt"]
        assert 0 < boot - started < 5000, (boot, started)  # inside the old default boot_margin
        fleet = write_fleet(tmp_path / "fleet", [gateway], defaults={"stale_after": "0s"})
        check = run_supervisor("check", "--fleet", str(fleet), "--json", state_dir=tmp_path / "s")
        found = {s["key"]: s["verdict"] for s in check.json()["gateways"][0]["sessions"]}
        assert found[key] == "zombie", check.stdout
        heal = run_supervisor(
            "heal", "--fleet", str(fleet), "--json", state_dir=tmp_path / "s",
            env={"SUPERVISOR_VERIFY_DELAY_S": "0.5"},
        )  # fmt: skip
        steps = [(a["step"], a["outcome"]) for a in heal.json()["actions"] if a["key"] == key]
        assert ("verify", "healed") in steps, heal.stdout
        gateway.model.hang_enabled = False

        async def talk() -> None:
            async with gateway.client() as client:
                await gateway.deliver(client, key, f"[{key}] are you back? answer briefly")
                await wait_for_rows(
                    client,
                    lambda rows: rows.get(key, {}).get("status") == "done",
                    timeout=60,
                    what=f"the turn sent to {key} after healing to finish",
                )

        gateway._run(talk())
    finally:
        gateway.stop()

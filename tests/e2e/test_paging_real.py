"""Escalation end to end on a real 2026.9.6 gateway, paging a loopback PagerDuty.

The supervisor connects with `operator.read` and `operator.write` only (the fleet file's
`scopes`): it cannot reset a lane, and on 2026.9.6 `/new` without `operator.admin` clears
nothing either (measured: it only queues a message behind the dead lane, turning the zombie
`held`), so nothing is sent. The zombie survives every attempt and is escalated: exactly one
trigger. An operator then resets it by hand; the next pass sends exactly
one resolve with the same dedup key.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.cli import run_supervisor, write_fleet
from tests.e2e.factory import GatewayFactory
from tests.support.paging import PD_KEY, Recorder

pytestmark = pytest.mark.e2e


def test_a_zombie_the_token_cannot_reset_pages_once_and_resolves_once(
    real_gateways: GatewayFactory, http: Recorder, tmp_path: Path
) -> None:
    gateway = real_gateways("2026.9.6")
    try:
        outcome = gateway.make_zombies("a-replayed", "b-stuck")
        (zombie,) = outcome.zombies
        fleet = write_fleet(
            tmp_path / "fleet",
            [gateway],
            defaults={"stale_after": "0s", "backoff_base": "0s"},
        )
        text = fleet.read_text().replace(
            "[defaults]\n", "[defaults]\nmax_attempts = 2\n"
        ).replace(
            'token_file = "', 'scopes = ["operator.read", "operator.write"]\ntoken_file = "'
        )  # fmt: skip
        fleet.write_text(
            text
            + f'\n[paging]\n[paging.providers.pd]\ntype = "pagerduty"\nbase_url = "{http.url}"\n'
            'routing_key_env = "PD_KEY"\n[paging.default_route]\nproviders = ["pd"]\n'
        )
        state = tmp_path / "state"
        env = {"PD_KEY": PD_KEY, "SUPERVISOR_VERIFY_DELAY_S": "0.5"}

        def heal() -> dict[str, object]:
            run = run_supervisor("heal", "--fleet", str(fleet), "--json", state_dir=state, env=env)
            doc = run.json()
            assert isinstance(doc, dict), run.stdout + run.stderr
            return doc

        steps = []
        for _ in range(5):  # two ineffective attempts, the escalation, then hands off
            doc = heal()
            steps += [
                (a["step"], a["outcome"])
                for a in doc["actions"]  # type: ignore[attr-defined]
                if a["key"] == zombie
            ]
        # no operator.admin: neither reset nor /new can clear it, and /new is not sent (on
        # 2026.9.6 it would only queue a message behind the dead lane, measured)
        assert steps.count(("reset", "cannot_reset")) == 2, steps
        assert steps.count(("verify", "ineffective")) == 2, steps
        assert steps.count(("escalate", "escalated")) == 1, steps
        row = gateway.rows()[zombie]
        assert row["status"] == "running" and row["hasActiveRun"] is False  # nothing queued
        events = [(r.json()["event_action"], r.json()["dedup_key"]) for r in http.requests]
        assert events == [("trigger", f"{gateway.name}/{zombie}")]

        gateway.call("sessions.reset", {"key": zombie})  # an operator, with admin
        heal()
        heal()
        events = [(r.json()["event_action"], r.json()["dedup_key"]) for r in http.requests]
        assert events == [
            ("trigger", f"{gateway.name}/{zombie}"),
            ("resolve", f"{gateway.name}/{zombie}"),
        ]
        assert PD_KEY not in (state / "redis").joinpath("valkey-server.log").read_text()
    finally:
        gateway.stop()

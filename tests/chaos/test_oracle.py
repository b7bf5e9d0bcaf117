"""The oracle is not vacuous: with a safety mechanism switched off, rows stop being clean.

Each test breaks one mechanism in this process (the inline engine) and runs a few runs of the
row that guards it: step claims (4a), the re-read before acting (3), and the no-blind-retry rule
(10, by making the client retry a request whose connection was reset).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import supervisor.recovery.steps as steps_module
from supervisor.core import ladder
from supervisor.core.ladder import Binding
from supervisor.errors import GatewayUnreachable
from supervisor.gateway.client import GatewayClient
from supervisor.recovery.scanner import Scanner
from supervisor.state.episodes import Episodes, StepClaim
from tests.chaos import adversarial, inline
from tests.chaos.harness import chaos_environ

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _env() -> Iterator[None]:
    with chaos_environ():
        yield


def test_without_step_claims_copies_of_a_step_act_twice(tmp_path: Path) -> None:
    with mock.patch.object(Episodes, "claim_step", lambda *_: StepClaim(state="new")):
        row = inline.concurrent_steps(tmp_path, 3)
    assert row.duplicates > 0 and row.survived < row.runs


def test_without_the_reread_a_live_run_is_aborted(tmp_path: Path) -> None:
    with mock.patch("supervisor.core.ladder.compare", lambda *_: Binding.SAME):
        row = inline.live_race(tmp_path, 4)
    assert row.wrong > 0 and row.survived == 0


def test_a_blind_retry_after_a_reset_connection_is_seen(tmp_path: Path) -> None:
    call = GatewayClient.call

    async def blind(self: GatewayClient, method: str, params: Any = None, **kw: Any) -> Any:
        try:
            return await call(self, method, params, **kw)
        except GatewayUnreachable:
            async with GatewayClient(self.spec, self._identity) as again:
                return await call(again, method, params, **kw)

    with mock.patch.object(GatewayClient, "call", blind):
        row = inline.connection_reset(tmp_path, 4)
    assert row.survived == 0 and (row.duplicates + row.wrong) > 0


# -- issue 11's rows (tests/chaos/adversarial.py) ----------------------------------------------


def test_without_the_event_witness_collisions_go_unreported(tmp_path: Path) -> None:
    with mock.patch.object(GatewayClient, "runs_started_since", lambda *_a, **_k: []):
        row = adversarial.act_window_messages(tmp_path, 4)
    assert row.wrong > 0 and row.survived == 0


def test_without_the_act_window_and_lease_deadline_paused_holders_send(tmp_path: Path) -> None:
    real = ladder._final_read

    def blind(attempt: Any, read: ladder.Read, policy: Any) -> ladder.Action:
        fresh = dataclasses.replace(read, read_age_s=0.0, lease_left_s=1e9)
        return real(attempt, fresh, policy)

    # both checks: the ladder's on the final read, and the step's again at the moment of sending
    with (
        mock.patch.object(ladder, "_final_read", blind),
        mock.patch.object(steps_module, "_late", lambda *_: False),
    ):
        row = adversarial.paused_holders(tmp_path, 4)
    assert row.survived == 0


def test_without_the_heal_budget_a_flapping_session_is_reset_forever(tmp_path: Path) -> None:
    real = ladder._found

    def forgetful(found: ladder.Found, policy: Any, now_ms: float) -> ladder.Action:
        episode = dataclasses.replace(found.episode, heals_in_window=0)
        return real(dataclasses.replace(found, episode=episode), policy, now_ms)

    with mock.patch.object(ladder, "_found", forgetful):
        row = adversarial.flapping(tmp_path, 5)
    assert row.survived == 0


def test_without_confirming_absence_a_shifted_listing_closes_episodes(tmp_path: Path) -> None:
    with mock.patch.object(Scanner, "_confirm_absent", lambda _s, _spec, keys: set(keys)):
        row = adversarial.shifting_pages(tmp_path, 2)
    assert row.survived == 0

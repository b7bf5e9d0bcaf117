"""The stateful test can fail: with each mechanism of the ladder switched off, it does."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from supervisor.core import ladder
from supervisor.core.ladder import Binding
from tests.core.test_ladder_stateful import LadderMachine


def _no_rebind() -> Any:
    return mock.patch.object(ladder, "compare", lambda *_: Binding.SAME)


def _no_collision() -> Any:
    original = ladder._answered

    def blind(attempt: Any, answered: ladder.Answered) -> ladder.Action:
        return original(attempt, dataclasses.replace(answered, collided=False))

    return mock.patch.object(ladder, "_answered", blind)


def _reset_over_a_live_abort() -> Any:
    original = ladder._after_abort

    def reckless(attempt: Any, answer: str | None) -> ladder.Action:
        return original(attempt, "no-active-run" if answer == "aborted" else answer)

    return mock.patch.object(ladder, "_after_abort", reckless)


@pytest.mark.parametrize("switch_off", [_no_rebind, _no_collision, _reset_over_a_live_abort])
def test_the_machine_catches_the_mechanism_switched_off(switch_off: Callable[[], Any]) -> None:
    with switch_off(), pytest.raises(BaseException):  # noqa: B017 - hypothesis groups them
        run_state_machine_as_test(
            LadderMachine,
            settings=settings(
                max_examples=300,
                stateful_step_count=40,
                deadline=None,
                database=None,
                phases=[Phase.generate],  # found is enough: shrinking would take a minute
            ),
        )

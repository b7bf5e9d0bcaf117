"""The stateful test can fail: with each mechanism of the ladder switched off, it does.

Each mutant is shown by the one sequence of world events that breaks it, run on the very
machine the stateful test searches with: deterministic, where a random search's finds depend on
hypothesis's version and seed (the search found each of them too, at 300 examples, when written).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest

from supervisor.core import ladder
from supervisor.core.ladder import Binding
from tests.core.test_ladder_stateful import LadderMachine


def _no_rebind() -> Any:
    return mock.patch.object(ladder, "compare", lambda *_: Binding.SAME)


def _no_collision() -> Any:
    original = ladder._answered

    def blind(attempt: Any, answered: ladder.Answered, policy: Any) -> ladder.Action:
        return original(attempt, dataclasses.replace(answered, collided=False), policy)

    return mock.patch.object(ladder, "_answered", blind)


def _reset_over_a_live_abort() -> Any:
    original = ladder._after_abort

    def reckless(attempt: Any, answer: str | None) -> ladder.Action:
        return original(attempt, "no-active-run" if answer == "aborted" else answer)

    return mock.patch.object(ladder, "_after_abort", reckless)


#: the world events that break each mechanism, in order (the machine's rule names)
SEQUENCES: dict[Callable[[], Any], tuple[str, ...]] = {
    _no_rebind: ("scan", "user_sends_a_message", "step_reads"),
    _no_collision: ("scan", "step_reads", "user_sends_a_message", "step_sends"),
    _reset_over_a_live_abort: ("scan", "gateway_will_answer_wrongly", "step_reads", "step_sends"),
}


def _run(machine: LadderMachine, rules: tuple[str, ...]) -> None:
    for rule in rules:
        getattr(machine, rule)()
        machine.attempts_are_bounded()


@pytest.mark.parametrize("switch_off", list(SEQUENCES), ids=lambda f: f.__name__)
def test_the_machine_catches_the_mechanism_switched_off(switch_off: Callable[[], Any]) -> None:
    with switch_off(), pytest.raises(AssertionError):
        _run(LadderMachine(), SEQUENCES[switch_off])


@pytest.mark.parametrize("switch_off", list(SEQUENCES), ids=lambda f: f.__name__)
def test_the_same_sequence_is_harmless_with_the_mechanism_on(
    switch_off: Callable[[], Any],
) -> None:
    _run(LadderMachine(), SEQUENCES[switch_off])

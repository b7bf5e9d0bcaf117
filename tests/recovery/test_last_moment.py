"""The moment of acting: a pause after the ladder's check and before the send sends nothing.

A process frozen there (a GC pause, SIGSTOP, a VM migration) resumes holding a decision made on
a read seconds old; chaos row 26 saw a host's step, frozen with its whole process, send an
abort after another host had reset the session. The step checks the read's age and its lease
deadline again right before the request.
"""

from __future__ import annotations

import time

import pytest

from supervisor.recovery.runtime import run_ladder
from tests.recovery.conftest import Rig
from tests.recovery.test_safety import at_point, outcomes

KEY = "agent:main:z"


@pytest.mark.parametrize("version", ["2026.9.6", "2026.3.24"])
@pytest.mark.parametrize("step", ["abort", "reset"])
def test_a_pause_before_the_send_sends_nothing(rig: Rig, version: str, step: str) -> None:
    gw = rig.gateway("gw", version)
    gw.add_zombie(KEY)
    # act_window 0.25 s by default: a pause of 0.6 s right before the send makes the read stale
    with at_point("before_send", step, lambda: time.sleep(0.6)):
        actions = run_ladder(rig.engine(), "gw")
    assert (step, "stale_read") in outcomes(actions), outcomes(actions)
    method = {"abort": "sessions.abort", "reset": "sessions.reset"}[step]
    assert gw.mutation_count(KEY, method) == 0


def test_without_a_pause_the_same_step_is_sent(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.3.24")
    gw.add_zombie(KEY)
    with at_point("before_send", "abort", lambda: time.sleep(0.01)):
        actions = run_ladder(rig.engine(), "gw")
    assert ("abort", "no_active_run") in outcomes(actions)

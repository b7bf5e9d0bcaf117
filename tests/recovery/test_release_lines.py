"""The ladder on every served release line (the simulator speaks each as measured)."""

from __future__ import annotations

import pytest

from supervisor.recovery import steps
from supervisor.recovery.runtime import run_ladder
from tests.recovery.conftest import Rig


@pytest.mark.parametrize("version", ["2026.5.28", "2026.7.35"])
def test_lines_that_refuse_expected_session_id_are_reset_by_key(rig: Rig, version: str) -> None:
    steps._NO_EXPECTED_SESSION_ID.clear()
    gw = rig.gateway("gw", version)
    gw.add_zombie("agent:main:z1")
    gw.add_zombie("agent:main:z2")
    actions = run_ladder(rig.engine(), "gw")
    healed = {a.key for a in actions if a.step == "verify" and a.outcome == "healed"}
    assert healed == {"agent:main:z1", "agent:main:z2"}, [(a.key, a.outcome) for a in actions]
    resets = [m for m in gw.mutations if m.method == "sessions.reset"]
    # refused once (before touching anything), then by key only; never refused again
    assert [m.outcome for m in resets].count("reset") == 2
    assert sum("expectedSessionId" in m.params for m in resets) <= 1


def test_2026_9_6_keeps_its_fence(rig: Rig) -> None:
    steps._NO_EXPECTED_SESSION_ID.clear()
    gw = rig.gateway("gw", "2026.9.6")
    gw.add_zombie("agent:main:z")
    run_ladder(rig.engine(), "gw")
    (reset,) = [m for m in gw.mutations if m.method == "sessions.reset"]
    assert reset.params.get("expectedSessionId") == gw.sessions["agent:main:z"].session_id

"""2026.9.6 answers `sessions.get` without listing it in `features.methods` (its method table
marks it `advertise: false`); the simulator does the same, so capabilities say `no` as they do
against the real gateway."""

from __future__ import annotations

import pytest

from supervisor.simulator import SimGateway
from supervisor.simulator.gateway import SimError


def test_9_6_answers_sessions_get_without_advertising_it() -> None:
    gw = SimGateway("gw", version="2026.9.6")
    gw.add_idle("agent:dev:idle")
    assert "sessions.get" not in gw.hello(4, [])["features"]["methods"]
    assert "sessions.describe" in gw.hello(4, [])["features"]["methods"]
    got = gw.handle("sessions.get", {"key": "agent:dev:idle"}, ["operator.read"])
    assert got["session"]["key"] == "agent:dev:idle"


@pytest.mark.parametrize("version", ["2026.3.24", "2026.5.28", "2026.7.35"])
def test_other_lines_have_no_sessions_get(version: str) -> None:
    gw = SimGateway("gw", version=version)
    gw.add_idle("agent:dev:idle")
    with pytest.raises(SimError, match="unknown method"):
        gw.handle("sessions.get", {"key": "agent:dev:idle"}, ["operator.read"])

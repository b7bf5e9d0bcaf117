"""Silences against a real valkey-server: scope, precedence, expiry, lifting."""

from __future__ import annotations

import time

import pytest

from supervisor.escalation.errors import SilenceError
from supervisor.escalation.incidents import Incidents
from supervisor.escalation.silences import parse_target

pytestmark = pytest.mark.integration

KEY = "agent:main:telegram:group:-100"


def test_a_gateway_silence_covers_its_sessions(incidents: Incidents) -> None:
    silence = incidents.silence("gw", 600, "maintenance window", created_by="ana")
    assert silence.target == "gw"
    found = incidents.is_silenced("gw", KEY)
    assert found is not None and found.reason == "maintenance window"
    assert incidents.is_silenced("gw") is not None
    assert incidents.is_silenced("other", KEY) is None


def test_a_session_silence_covers_only_that_session(incidents: Incidents) -> None:
    incidents.silence(f"gw/{KEY}", 600, "known bug")
    assert incidents.is_silenced("gw", KEY) is not None
    assert incidents.is_silenced("gw", KEY + "x") is None
    assert incidents.is_silenced("gw") is None


def test_the_most_restrictive_silence_wins(incidents: Incidents) -> None:
    incidents.silence("gw", 60, "pages only")
    incidents.silence(f"gw/{KEY}", 30, "hands off", also_actions=True)
    found = incidents.is_silenced("gw", KEY)
    assert found is not None and found.also_actions and found.key == KEY


def test_silences_expire_by_themselves(incidents: Incidents) -> None:
    incidents.silence("gw", 0.2, "short")
    assert incidents.is_silenced("gw") is not None
    time.sleep(0.35)
    assert incidents.is_silenced("gw") is None
    assert incidents.list_silences() == []


def test_list_and_unsilence(incidents: Incidents) -> None:
    incidents.silence("gw", 60, "a")
    incidents.silence(f"gw/{KEY}", 30, "b")
    incidents.silence("gw2", 90, "c")
    assert [s.target for s in incidents.list_silences()] == [f"gw/{KEY}", "gw", "gw2"]
    assert [s.target for s in incidents.list_silences("gw2")] == ["gw2"]
    assert incidents.unsilence("gw")
    assert not incidents.unsilence("gw")
    assert incidents.is_silenced("gw", KEY) is not None  # the session's own stays


def test_session_keys_may_contain_slashes() -> None:
    assert parse_target("gw/a/b:c") == ("gw", "a/b:c")
    assert parse_target("gw") == ("gw", None)


@pytest.mark.parametrize("target", ["", "/k", "gw/", "bad name", "-x"])
def test_bad_targets(incidents: Incidents, target: str) -> None:
    with pytest.raises(SilenceError):
        incidents.silence(target, 60, "why")


def test_bad_durations_and_reasons(incidents: Incidents) -> None:
    with pytest.raises(SilenceError, match="duration"):
        incidents.silence("gw", 0, "why")
    with pytest.raises(SilenceError, match="duration"):
        incidents.silence("gw", 91 * 86400, "why")
    with pytest.raises(SilenceError, match="reason"):
        incidents.silence("gw", 60, "  ")

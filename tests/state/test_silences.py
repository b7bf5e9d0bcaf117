"""Silences against a real valkey-server: scope, precedence, expiry, lifting."""

from __future__ import annotations

import time

import pytest

from supervisor.errors import SilenceError
from supervisor.state.silences import Silences, parse_target

pytestmark = pytest.mark.integration

KEY = "agent:main:telegram:group:-100"


def test_a_gateway_silence_covers_its_sessions(silences: Silences) -> None:
    silence = silences.silence("gw", 600, "maintenance window", created_by="ana")
    assert silence.target == "gw"
    found = silences.is_silenced("gw", KEY)
    assert found is not None and found.reason == "maintenance window"
    assert silences.is_silenced("gw") is not None
    assert silences.is_silenced("other", KEY) is None


def test_a_session_silence_covers_only_that_session(silences: Silences) -> None:
    silences.silence(f"gw/{KEY}", 600, "known bug")
    assert silences.is_silenced("gw", KEY) is not None
    assert silences.is_silenced("gw", KEY + "x") is None
    assert silences.is_silenced("gw") is None


def test_the_most_restrictive_silence_wins(silences: Silences) -> None:
    silences.silence("gw", 60, "pages only")
    silences.silence(f"gw/{KEY}", 30, "hands off", also_actions=True)
    found = silences.is_silenced("gw", KEY)
    assert found is not None and found.also_actions and found.key == KEY


def test_silences_expire_by_themselves(silences: Silences) -> None:
    silences.silence("gw", 0.2, "short")
    assert silences.is_silenced("gw") is not None
    time.sleep(0.35)
    assert silences.is_silenced("gw") is None
    assert silences.list() == []


def test_list_and_unsilence(silences: Silences) -> None:
    silences.silence("gw", 60, "a")
    silences.silence(f"gw/{KEY}", 30, "b")
    silences.silence("gw2", 90, "c")
    assert [s.target for s in silences.list()] == [f"gw/{KEY}", "gw", "gw2"]
    assert [s.target for s in silences.list("gw2")] == ["gw2"]
    assert silences.unsilence("gw")
    assert not silences.unsilence("gw")
    assert silences.is_silenced("gw", KEY) is not None  # the session's own stays


def test_session_keys_may_contain_slashes() -> None:
    assert parse_target("gw/a/b:c") == ("gw", "a/b:c")
    assert parse_target("gw") == ("gw", None)


@pytest.mark.parametrize("target", ["", "/k", "gw/", "bad name", "-x"])
def test_bad_targets(silences: Silences, target: str) -> None:
    with pytest.raises(SilenceError):
        silences.silence(target, 60, "why")


def test_bad_durations_and_reasons(silences: Silences) -> None:
    with pytest.raises(SilenceError, match="duration"):
        silences.silence("gw", 0, "why")
    with pytest.raises(SilenceError, match="duration"):
        silences.silence("gw", 91 * 86400, "why")
    with pytest.raises(SilenceError, match="reason"):
        silences.silence("gw", 60, "  ")

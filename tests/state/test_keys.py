"""Key layout: one prefix, and no two different (kind, parts) tuples share a Redis key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.state.keys import Keys

KEYS = Keys()


def test_layout() -> None:
    assert KEYS.fence == "ls:fence"
    assert KEYS.audit == "ls:audit"
    assert KEYS.lease("gw1", "agent:main:main") == "ls:lease:gw1:agent%3Amain%3Amain"
    assert KEYS.attempts("gw1", "agent:main:main", "sid-1") == (
        "ls:attempts:gw1:agent%3Amain%3Amain:sid-1"
    )
    assert KEYS.escalated("gw1", "k", "s") == "ls:escalated:gw1:k:s"
    assert Keys("other:").lease("g", "k") == "other:lease:g:k"


def test_colons_cannot_shift_components() -> None:
    # ("a:b", "c") and ("a", "b:c") would both be "a:b:c" if joined raw
    assert KEYS.attempts("gw", "a:b", "c") != KEYS.attempts("gw", "a", "b:c")
    assert KEYS.lease("gw:x", "k") != KEYS.lease("gw", "x:k")


def test_glob_characters_are_escaped_in_patterns() -> None:
    keys = Keys("t*[1]?:")
    for pattern in (keys.all_keys(), keys.silences(), keys.gateway_states()):
        assert pattern.endswith("*")
        assert pattern.startswith(r"t\*\[1\]\?:")


@pytest.mark.parametrize("bad", ["", ":", "ls", "ls:x"])
def test_prefix_must_end_with_a_colon(bad: str) -> None:
    with pytest.raises(ValueError):
        Keys(bad)


part = st.text(min_size=0, max_size=12)


@given(a=st.tuples(part, part, part), b=st.tuples(part, part, part))
def test_attempt_keys_are_injective(a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
    assert (KEYS.attempts(*a) == KEYS.attempts(*b)) == (a == b)
    assert KEYS.parse(KEYS.attempts(*a)) == ("attempts", *a)


@given(gateway=part, key=part)
def test_kinds_never_collide(gateway: str, key: str) -> None:
    built = {
        KEYS.lease(gateway, key),
        KEYS.active(gateway),
        KEYS.gateway_state(gateway),
        KEYS.silence(gateway),
        KEYS.silence(gateway, key),
        KEYS.incident(f"{gateway}/{key}"),
        KEYS.attempts(gateway, key, key),
        KEYS.escalated(gateway, key, key),
        KEYS.step_claim(gateway, key),
        KEYS.flag(gateway),
        KEYS.fence,
        KEYS.audit,
        KEYS.incidents_open,
        KEYS.incidents_resolving,
    }
    assert len(built) == 14

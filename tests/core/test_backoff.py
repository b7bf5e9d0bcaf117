"""compute_backoff: exponential, capped, jitter within bounds, deterministic per seed; no Redis."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.backoff import backoff_seed, compute_backoff

BASE = {"base_s": 10.0, "factor": 2.0, "max_s": 600.0}


def test_exponential_then_capped_without_jitter() -> None:
    delays = [compute_backoff(n, **BASE, jitter=0, seed="s") for n in range(1, 10)]
    assert delays == [10, 20, 40, 80, 160, 320, 600, 600, 600]


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    assert compute_backoff(10_000, **BASE, jitter=0, seed=1) == 600
    assert compute_backoff(10_000, **BASE, jitter=0.5, seed=1) <= 600


def test_same_seed_same_delay_other_seed_other_delay() -> None:
    a = compute_backoff(3, **BASE, jitter=0.5, seed=backoff_seed("gw", "agent:main:main", 3))
    b = compute_backoff(3, **BASE, jitter=0.5, seed=backoff_seed("gw", "agent:main:main", 3))
    c = compute_backoff(3, **BASE, jitter=0.5, seed=backoff_seed("gw", "agent:main:other", 3))
    assert a == b
    assert a != c


def test_seed_is_stable_across_processes() -> None:
    """str seeds must not depend on PYTHONHASHSEED: two workers must agree on "not before"."""
    code = (
        "from supervisor.core.backoff import compute_backoff as c;"
        "print(repr(c(4, base_s=10, factor=2, max_s=600, jitter=0.5, seed='gw|k|4')))"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(n)},
        ).stdout
        for n in (1, 2)
    }
    assert len(outs) == 1
    assert float(outs.pop()) == compute_backoff(
        4, base_s=10, factor=2, max_s=600, jitter=0.5, seed="gw|k|4"
    )


@given(
    attempt=st.integers(1, 200),
    jitter=st.floats(0, 1),
    seed=st.one_of(st.integers(), st.text(max_size=40)),
)
def test_jitter_stays_within_bounds(attempt: int, jitter: float, seed: int | str) -> None:
    plain = compute_backoff(attempt, **BASE, jitter=0, seed=seed)
    jittered = compute_backoff(attempt, **BASE, jitter=jitter, seed=seed)
    assert (1 - jitter) * plain - 1e-9 <= jittered <= plain
    assert jittered <= BASE["max_s"]


def test_jitter_spreads_delays() -> None:
    delays = {compute_backoff(5, **BASE, jitter=0.5, seed=f"k{i}") for i in range(50)}
    assert len(delays) == 50
    assert min(delays) < 0.6 * 160 < 0.9 * 160 < max(delays)


@pytest.mark.parametrize(
    ("attempt", "kwargs"),
    [
        (0, {}),
        (1, {"factor": 0.5}),
        (1, {"jitter": 1.5}),
        (1, {"jitter": -0.1}),
        (1, {"base_s": -1.0}),
    ],
)
def test_rejects_nonsense(attempt: int, kwargs: dict[str, float]) -> None:
    args = {**BASE, "jitter": 0.1, **kwargs}
    with pytest.raises(ValueError):
        compute_backoff(attempt, seed=1, **args)  # type: ignore[arg-type]


def test_zero_base_and_factor_one() -> None:
    assert compute_backoff(7, base_s=0, factor=2, max_s=60, jitter=0.5, seed=1) == 0
    assert compute_backoff(7, base_s=5, factor=1, max_s=60, jitter=0, seed=1) == 5

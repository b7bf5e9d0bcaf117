"""A page says how many messages wait behind the lane when the engine knows, `unknown` when it
says it cannot tell, and nothing when it did not say (gateway pages without the count)."""

from __future__ import annotations

import pytest

from supervisor.escalation.models import IncidentEvent


def event(kind: str, key: str | None, **details: object) -> IncidentEvent:
    return IncidentEvent.model_validate(
        {"dedup_key": "gw/k", "gateway": "gw", "key": key, "kind": kind, "details": details,
         "started_ms": 0, "ts_ms": 0}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("waiting", "text"),
    [(0, "; 0 messages waiting"), (1, "; 1 message waiting"), (3, "; 3 messages waiting"),
     (None, "; messages waiting: unknown")],
)  # fmt: skip
def test_the_summary_says_what_waits(waiting: int | None, text: str) -> None:
    for kind, key in (
        ("escalated", "agent:dev:z"),
        ("stuck", "agent:dev:z"),
        ("breaker_open", None),
    ):
        summary = event(kind, key, messages_waiting=waiting, attempts=3).summary
        assert summary.endswith(text), summary


def test_no_count_given_says_nothing() -> None:
    assert "waiting" not in event("escalated", "agent:dev:z", attempts=3).summary

"""Retry-After parsing and secret masking: pure parts of the HTTP edge."""

from __future__ import annotations

import email.utils

import pytest

from supervisor.escalation.http import parse_retry_after, redact

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),
        ("-3", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def test_redact_masks_longest_first() -> None:
    assert redact("a secret-long and secret", ["secret", "secret-long"]) == "a *** and ***"
    assert redact("nothing", []) == "nothing"

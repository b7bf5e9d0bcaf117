"""Durations as operators write them in fleet files: "0s", "90s", "20m", "2h", "1d" or seconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, NonNegativeFloat

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Seconds from a duration string ("1h30m" too) or a plain non-negative number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as '90s', '20m', '2h'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return float(text)
        if text and _PART.sub("", text) == "":
            return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    raise ValueError(
        f"{value!r} is not a duration: use seconds or a string such as '0s', '90s', '20m', '2h'"
    )


def format_duration(seconds: float) -> str:
    """The shortest readable form of a duration, for tables and docs."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


#: a field type: accepts what `parse_duration` accepts, holds seconds
Duration = Annotated[NonNegativeFloat, BeforeValidator(parse_duration)]

import pytest

from supervisor.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0),
        ("90s", 90),
        ("20m", 1200),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("250ms", 0.25),
        (45, 45),
        (1.5, 1.5),
        ("30", 30),
        (" 2H ", 7200),
    ],
)
def test_parses_operator_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "abc", "-5s", -1, "5 parsecs", "m5", True, None, [1]])
def test_rejects_non_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (90, "90s"), (1200, "20m"), (7200, "2h"), (0.25, "250ms")]
)
def test_formats_round_trip(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(format_duration(seconds)) == seconds

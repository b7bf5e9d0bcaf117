"""Scan entries from the fleet file, and how their first runs are spread."""

from __future__ import annotations

from supervisor.fleet import parse_fleet
from supervisor.schedule import ENTRY_PREFIX, desired_entries, spread_offset_s


def test_one_entry_per_gateway_with_its_own_interval() -> None:
    text = (
        '[defaults]\nscan_interval = "60s"\n'
        '[[gateways]]\nname = "a"\nurl = "ws://h:1"\ntoken_env = "T"\n'
        '[[gateways]]\nname = "b"\nurl = "ws://h:2"\ntoken_env = "T"\nscan_interval = "5m"\n'
    )
    fleet = parse_fleet(text, "f.toml", {"T": "x"})
    assert desired_entries(fleet) == {ENTRY_PREFIX + "a": 60.0, ENTRY_PREFIX + "b": 300.0}


def test_first_runs_of_1000_gateways_spread_over_the_interval() -> None:
    offsets = [spread_offset_s(f"gw-{i:04d}", 60.0) for i in range(1000)]
    assert all(0 <= o < 60 for o in offsets)
    per_second = [0] * 60
    for o in offsets:
        per_second[int(o)] += 1
    assert max(per_second) < 40  # ~17 a second on average, never all at once
    assert spread_offset_s("gw-0001", 60.0) == spread_offset_s("gw-0001", 60.0)  # stable

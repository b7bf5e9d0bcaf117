from pathlib import Path

import pytest

from supervisor.errors import FleetFileError
from supervisor.fleet import load_fleet, parse_fleet

MINIMUM = """
[defaults]
scan_interval = "60s"   # how often each gateway is scanned
stale_after = "20m"     # a zombie (running, no active run) older than this gets recovered
lane_timeout = "2h"     # a live run older than this gets aborted (configurable lane timeout)

[[gateways]]
name = "kitchen"
url = "ws://127.0.0.1:18789"
token_env = "KITCHEN_GATEWAY_TOKEN"   # or token_file = "/path/to/token"
# any [defaults] key may also be set per gateway
"""
ENV = {"KITCHEN_GATEWAY_TOKEN": "s3cret-token"}


def test_the_documented_minimum_works_as_written() -> None:
    fleet = parse_fleet(MINIMUM, "fleet.toml", ENV)
    (gw,) = fleet.gateways
    assert gw.name == "kitchen"
    assert gw.policy.scan_interval == 60
    assert gw.policy.stale_after == 1200
    assert gw.policy.lane_timeout == 7200
    assert gw.token.get_secret_value() == "s3cret-token"
    assert "s3cret" not in repr(gw) and "s3cret" not in gw.model_dump_json()


def test_per_gateway_overrides_and_key_patterns() -> None:
    text = MINIMUM.replace(
        'token_env = "KITCHEN_GATEWAY_TOKEN"',
        'token_env = "KITCHEN_GATEWAY_TOKEN"\nstale_after = 0\n'
        'lane_timeouts = { "agent:research:*" = "6h" }',
    )
    gw = parse_fleet(text, "fleet.toml", ENV).gateways[0]
    assert gw.policy.stale_after == 0
    assert gw.policy.scan_interval == 60  # inherited
    assert gw.policy.lane_timeout_for("agent:research:x") == 6 * 3600
    assert gw.policy.lane_timeout_for("agent:main:x") == 7200


def test_token_file_relative_to_the_fleet_file(tmp_path: Path) -> None:
    (tmp_path / "kitchen.token").write_text("from-file\n")
    text = MINIMUM.replace('token_env = "KITCHEN_GATEWAY_TOKEN"', 'token_file = "kitchen.token"')
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    assert load_fleet(path, {}).gateways[0].token.get_secret_value() == "from-file"


@pytest.mark.parametrize(
    ("change", "gateway", "field", "words"),
    [
        (("[defaults]", "[defaults"), None, None, "not valid TOML"),
        (
            ('name = "kitchen"', 'name = "kitchen"\ncolour = "red"'),
            "kitchen",
            "colour",
            "unknown key",
        ),
        (('url = "ws://127.0.0.1:18789"', 'url = "http://x"'), "kitchen", "url", "ws://"),
        (
            ('token_env = "KITCHEN_GATEWAY_TOKEN"', 'token_env = "NOPE"'),
            "kitchen",
            "token_env",
            "NOPE is not set",
        ),
        (
            ('stale_after = "20m"', 'stale_after = "soon"'),
            None,
            "defaults.stale_after",
            "not a duration",
        ),
        (
            ('scan_interval = "60s"', 'scan_interval = "60s"\nbogus = 1'),
            None,
            "defaults.bogus",
            "unknown key",
        ),
        (('name = "kitchen"', 'name = "kit chen"'), "kit chen", "name", "letters"),
        (
            ('token_env = "KITCHEN_GATEWAY_TOKEN"', 'stale_after = "3m"'),
            "kitchen",
            "token_env",
            "exactly one",
        ),
        (
            (
                'token_env = "KITCHEN_GATEWAY_TOKEN"',
                'token_env = "KITCHEN_GATEWAY_TOKEN"\nlane_timeout = "-3m"',
            ),
            "kitchen",
            "lane_timeout",
            "not a duration",
        ),
    ],
)
def test_bad_fleet_files_name_file_gateway_and_field(
    change: tuple[str, str], gateway: str | None, field: str | None, words: str
) -> None:
    with pytest.raises(FleetFileError) as info:
        parse_fleet(MINIMUM.replace(*change), "fleet.toml", ENV)
    err = info.value
    assert err.path == "fleet.toml"
    assert err.gateway == gateway
    assert err.field == field
    assert words in str(err)
    assert "\n" not in str(err)


def test_duplicate_names_are_refused() -> None:
    text = MINIMUM + MINIMUM.split("[[gateways]]")[1].join(["[[gateways]]", ""])
    with pytest.raises(FleetFileError) as info:
        parse_fleet(text, "fleet.toml", ENV)
    assert info.value.gateway == "kitchen"
    assert "duplicate" in str(info.value)


def test_unreadable_file_is_a_fleet_error(tmp_path: Path) -> None:
    with pytest.raises(FleetFileError, match="cannot read"):
        load_fleet(tmp_path / "missing.toml")


def test_scopes_are_checked() -> None:
    base = '[[gateways]]\nname = "g"\nurl = "ws://h:1"\ntoken_env = "T"\n'
    ok = parse_fleet(base + 'scopes = ["operator.read", "operator.write"]\n', "f.toml", {"T": "x"})
    assert ok.gateways[0].scopes == ("operator.read", "operator.write")
    with pytest.raises(FleetFileError, match=r"field 'scopes'.*operator\.read is needed"):
        parse_fleet(base + 'scopes = ["operator.write"]\n', "f.toml", {"T": "x"})
    with pytest.raises(FleetFileError, match=r"unknown scope 'operator\.root'"):
        parse_fleet(base + 'scopes = ["operator.read", "operator.root"]\n', "f.toml", {"T": "x"})

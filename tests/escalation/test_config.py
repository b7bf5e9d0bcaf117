"""The `[paging]` table: defaults, secrets from env and files, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.errors import FleetFileError
from supervisor.escalation.config import (
    PagerDutyProvider,
    PagingConfig,
    SlackProvider,
    WebhookProvider,
    parse_paging,
)
from tests.support.paging import (
    CANARIES,
    HMAC_SECRET,
    PD_KEY,
    SLACK_SECRET,
    Recorder,
    environ,
    load,
)

ENV = {"PD_KEY": PD_KEY, "SLACK_URL": f"https://hooks.slack.com/services/T/B/{SLACK_SECRET}"}

MINIMAL = """
[paging.providers.pd]
type = "pagerduty"
routing_key_env = "PD_KEY"

[paging.default_route]
providers = ["pd"]
"""


def test_absent_table_means_paging_off() -> None:
    config = parse_paging({}, "fleet.toml", {})
    assert not config.enabled
    assert config.default_route is None
    assert config.renotify_interval == 4 * 3600


def test_defaults() -> None:
    config = load(MINIMAL, ENV)
    pd = config.provider("pd")
    assert isinstance(pd, PagerDutyProvider)
    assert pd.base_url == "https://events.pagerduty.com"
    assert pd.routing_key.get_secret_value() == PD_KEY
    assert (pd.retry.max_tries, pd.retry.base, pd.retry.cap) == (4, 1.0, 30.0)
    assert config.severity_for("stuck") == "warning"
    assert config.severity_for("escalated") == "error"
    assert config.severity_for("unreachable") == "critical"
    assert config.severity_for("breaker_open") == "critical"
    assert config.severity_for("something-new") == "error"
    assert config.default_route is not None
    assert config.default_route.name == "default"


def test_full_example(http: Recorder, full_config: PagingConfig) -> None:
    hook = full_config.provider("hook")
    assert isinstance(hook, WebhookProvider)
    assert hook.hmac_secret is not None
    assert hook.hmac_secret.get_secret_value() == HMAC_SECRET
    assert hook.headers == {"X-Team": "infra"}
    assert set(hook.secret_headers) == {"Authorization"}
    assert hook.signature_header == "X-Lane-Supervisor-Signature"
    chat = full_config.provider("chat")
    assert isinstance(chat, SlackProvider)
    assert chat.min_interval == 0
    assert [r.name for r in full_config.routes] == ["prod"]
    assert full_config.routes[0].min_severity == "error"


def test_retry_defaults_merge_per_provider() -> None:
    text = MINIMAL.replace(
        'routing_key_env = "PD_KEY"', 'routing_key_env = "PD_KEY"\nretry = { max_tries = 2 }'
    )
    config = load("[paging.retry]\nbase = '2s'\n" + text, ENV)
    retry = config.provider("pd").retry
    assert (retry.max_tries, retry.base) == (2, 2.0)


def test_severity_mapping_is_configurable() -> None:
    config = load('[paging.severity]\nstuck = "info"\n' + MINIMAL, ENV)
    assert config.severity_for("stuck") == "info"
    assert config.severity_for("escalated") == "error"


def test_secret_from_a_file_relative_to_the_fleet_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pd").write_text(PD_KEY + "\n")
    text = MINIMAL.replace('routing_key_env = "PD_KEY"', 'routing_key_file = "secrets/pd"')
    config = load(text, {}, str(tmp_path / "fleet.toml"))
    provider = config.provider("pd")
    assert isinstance(provider, PagerDutyProvider)
    assert provider.routing_key.get_secret_value() == PD_KEY


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (('routing_key_env = "PD_KEY"', 'routing_key_env = "NOPE"'),
         "paging.providers.pd.routing_key_env", "NOPE is not set"),
        (('routing_key_env = "PD_KEY"', f'routing_key = "{PD_KEY}"'),
         "paging.providers.pd.routing_key", "do not belong in the fleet file"),
        (('routing_key_env = "PD_KEY"', 'routing_key_env = "PD_KEY"\nrouting_key_file = "x"'),
         "paging.providers.pd.routing_key_env", "exactly one"),
        (('routing_key_env = "PD_KEY"', ""), "paging.providers.pd.routing_key", "exactly one"),
        (('routing_key_env = "PD_KEY"', 'routing_key_file = "/nonexistent/pd"'),
         "paging.providers.pd.routing_key_file", "cannot read"),
        (('type = "pagerduty"', 'type = "opsgenie"'), "paging.providers.pd.type", "one of"),
        (('type = "pagerduty"', 'type = "pagerduty"\ncolour = "red"'),
         "paging.providers.pd.colour", "unknown key"),
        (('type = "pagerduty"', 'type = "pagerduty"\nbase_url = "ftp://x"'),
         "paging.providers.pd.base_url", "http"),
        (('type = "pagerduty"', 'type = "pagerduty"\nretry = { max_tries = 0 }'),
         "paging.providers.pd.retry.max_tries", "greater than or equal to 1"),
        (('providers = ["pd"]', 'providers = ["pd", "nobody"]'),
         "paging.default_route.providers", "unknown provider 'nobody'"),
        (("[paging.default_route]\nproviders = [\"pd\"]", ""), "paging.default_route", "required"),
        (("[paging.default_route]", "[paging.default_route]\nmatch = { gateways = ['x'] }"),
         "paging.default_route.match", "no match"),
        (("[paging.default_route]", "[paging.severity]\nstuck = 'loud'\n[paging.default_route]"),
         "paging.severity.stuck", "Input should be"),
        (("[paging.default_route]", "[paging]\nrenotify_interval = 'soon'\n[paging.default_route]"),
         "paging.renotify_interval", "not a duration"),
        (("[paging.default_route]", "[paging]\nwhatever = 1\n[paging.default_route]"),
         "paging.whatever", "unknown key"),
    ],
)  # fmt: skip
def test_errors_name_file_and_field(change: tuple[str, str], field: str, words: str) -> None:
    text = MINIMAL.replace(*change)
    assert text != MINIMAL
    with pytest.raises(FleetFileError) as info:
        load(text, ENV)
    assert info.value.field == field, str(info.value)
    assert words in info.value.problem
    assert str(info.value).startswith("fleet.toml: field ")
    assert PD_KEY not in str(info.value)


def test_route_errors() -> None:
    route = '[[paging.routes]]\nname = "a"\nproviders = ["pd"]\n'
    with pytest.raises(FleetFileError, match="duplicate route name 'a'") as info:
        load(MINIMAL + route + route, ENV)
    assert info.value.field == "paging.routes[1].name"
    with pytest.raises(FleetFileError, match="unknown provider 'x'") as info:
        load(MINIMAL + route.replace('"pd"', '"x"'), ENV)
    assert info.value.field == "paging.routes[0].providers"
    with pytest.raises(FleetFileError) as info:
        load(MINIMAL + '[[paging.routes]]\nproviders = ["pd"]\n', ENV)
    assert info.value.field == "paging.routes[0].name"
    with pytest.raises(FleetFileError) as info:
        parse_paging({"routes": {"a": 1}}, "fleet.toml", {})
    assert info.value.field == "paging.routes"
    with pytest.raises(FleetFileError) as info:
        parse_paging("yes", "fleet.toml", {})
    assert info.value.field == "paging"


def test_secret_values_never_in_errors_or_reprs(http: Recorder) -> None:
    env = environ(http)
    config = load(
        """
[paging.providers.hook]
type = "webhook"
url = "https://hooks.example.com/x?token=canary-hmac-secret-0a7f"
[paging.default_route]
providers = ["hook"]
""",
        env,
    )
    text = repr(config) + str(config) + config.model_dump_json()
    assert not any(c in text for c in CANARIES)
    bad_url = "[paging.providers.hook]\ntype = 'webhook'\nurl = 'gopher://canary-hmac-secret-0a7f'"
    with pytest.raises(FleetFileError) as info:
        load(bad_url + "\n[paging.default_route]\nproviders = []\n", env)
    assert HMAC_SECRET not in str(info.value)
    assert info.value.field == "paging.providers.hook.url"
    wrong_file = MINIMAL.replace('routing_key_env = "PD_KEY"', f'routing_key_file = "{PD_KEY}"')
    with pytest.raises(FleetFileError) as info:
        load(wrong_file, ENV)
    # a file name is not a secret (and here the canary is one only by accident)
    assert "cannot read" in info.value.problem

"""Routing is a pure function of gateway, labels and severity; deliver never raises."""

from __future__ import annotations

import pytest

from supervisor.escalation.base import Notifier, RecordingNotifier
from supervisor.escalation.config import PagingConfig
from supervisor.escalation.dispatch import deliver, dispatch, route_for, with_severity
from supervisor.escalation.models import DeliveryStatus
from tests.support.paging import load, make_event

ROUTES = """
[paging.providers.pd]
type = "pagerduty"
routing_key_env = "K"
[paging.providers.chat]
type = "slack"
webhook_url_env = "U"
[paging.providers.hook]
type = "webhook"
url = "https://hooks.example.com/x"

[[paging.routes]]
name = "prod-critical"
match = { labels = { env = "prod" } }
min_severity = "critical"
providers = ["pd", "chat"]

[[paging.routes]]
name = "kitchen"
match = { gateways = ["kitchen", "kitchen-*"] }
providers = ["hook"]

[[paging.routes]]
name = "eu-prod"
match = { gateways = ["eu-*"], labels = { env = "prod", team = "core*" } }
providers = ["pd"]

[paging.default_route]
providers = ["chat"]
"""
CONFIG = load(ROUTES, {"K": "k" * 32, "U": "https://hooks.slack.com/services/x"})


@pytest.mark.parametrize(
    ("gateway", "labels", "kind", "route"),
    [
        ("a", {"env": "prod"}, "unreachable", "prod-critical"),
        ("a", {"env": "prod"}, "escalated", "default"),  # error < critical: falls through
        ("kitchen", {"env": "prod"}, "escalated", "kitchen"),
        ("kitchen-2", {}, "stuck", "kitchen"),
        ("kitchenette", {}, "stuck", "default"),
        ("kitchen", {"env": "prod"}, "breaker_open", "prod-critical"),  # first match wins
        ("eu-1", {"env": "prod", "team": "core-infra"}, "escalated", "eu-prod"),
        ("eu-1", {"env": "prod", "team": "edge"}, "escalated", "default"),
        ("eu-1", {"env": "prod"}, "escalated", "default"),
        ("eu-1", {"team": "core"}, "escalated", "default"),
    ],
)
def test_route_for(gateway: str, labels: dict[str, str], kind: str, route: str) -> None:
    event = make_event(gateway=gateway, labels=labels, kind=kind, severity=None)
    chosen = route_for(event, CONFIG)
    assert chosen is not None and chosen.name == route


def test_no_paging_no_route() -> None:
    assert route_for(make_event(), PagingConfig()) is None
    assert dispatch(make_event(), PagingConfig()) == []


def test_severity_comes_from_the_mapping() -> None:
    assert with_severity(make_event(kind="stuck", severity=None), CONFIG).severity == "warning"
    assert with_severity(make_event(kind="stuck", severity="info"), CONFIG).severity == "info"


def test_dispatch_sends_to_every_provider_of_the_route() -> None:
    stubs = {
        "pd": RecordingNotifier("pd", [DeliveryStatus.RETRYABLE]),
        "chat": RecordingNotifier("chat"),
    }

    def factory(name: str, config: PagingConfig) -> Notifier:
        return stubs[name]

    event = make_event(labels={"env": "prod"}, kind="unreachable", severity=None)
    results = dispatch(event, CONFIG, factory=factory)
    assert [(r.provider, r.status, r.route) for r in results] == [
        ("pd", DeliveryStatus.RETRYABLE, "prod-critical"),
        ("chat", DeliveryStatus.OK, "prod-critical"),
    ]
    assert stubs["chat"].sent[0].severity == "critical"


def test_deliver_never_raises() -> None:
    unknown = deliver("nobody", make_event(), CONFIG)
    assert unknown.status is DeliveryStatus.PERMANENT
    assert "not (or no longer)" in (unknown.reason or "")

    def broken(name: str, config: PagingConfig) -> Notifier:
        raise RuntimeError("boom")

    crashed = deliver("pd", make_event(), CONFIG, factory=broken)
    assert crashed.status is DeliveryStatus.RETRYABLE
    assert crashed.reason == "internal error (RuntimeError)"

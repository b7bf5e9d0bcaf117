"""The generic webhook: Alertmanager's v4 payload, HMAC over the exact body, custom headers."""

from __future__ import annotations

import hashlib
import hmac

from supervisor.escalation.config import PagingConfig, WebhookProvider
from supervisor.escalation.models import Action, DeliveryStatus, fingerprint
from supervisor.escalation.webhook import ZERO_TIME, WebhookNotifier, build_payload, verify
from tests.support.paging import AUTH_SECRET, HMAC_SECRET, Recorder, Sleeps, make_event

TOP = {
    "version",
    "groupKey",
    "truncatedAlerts",
    "status",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
}
ALERT = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}


def notifier(config: PagingConfig, **changes: object) -> WebhookNotifier:
    provider = config.provider("hook")
    assert isinstance(provider, WebhookProvider)
    if changes:
        provider = provider.model_copy(update=changes)
    return WebhookNotifier(provider, external_url=config.external_url, sleep=Sleeps())


def test_firing_then_resolved_follow_alertmanager(
    http: Recorder, full_config: PagingConfig
) -> None:
    with notifier(full_config) as hook:
        assert hook.send(make_event()).ok
        assert hook.send(make_event(action=Action.RESOLVE, ts_ms=make_event().ts_ms + 60_000)).ok
    firing, resolved = (r.json() for r in http.to("/hook"))
    for body in (firing, resolved):
        assert set(body) == TOP
        assert body["version"] == "4"
        assert body["truncatedAlerts"] == 0
        assert body["receiver"] == "hook"
        assert body["externalURL"] == "https://ops.example.com/ls"
        assert len(body["alerts"]) == 1
        assert set(body["alerts"][0]) == ALERT
    assert firing["groupKey"] == resolved["groupKey"]
    assert firing["groupLabels"] == {"incident": make_event().dedup_key}
    alert, done = firing["alerts"][0], resolved["alerts"][0]
    assert (firing["status"], alert["status"]) == ("firing", "firing")
    assert (resolved["status"], done["status"]) == ("resolved", "resolved")
    assert alert["fingerprint"] == done["fingerprint"] == fingerprint(make_event().dedup_key)
    assert alert["startsAt"] == done["startsAt"] == "2025-11-24T16:00:00.000Z"
    assert alert["endsAt"] == ZERO_TIME
    assert done["endsAt"] == "2025-11-24T16:01:01.000Z"
    assert alert["labels"] == {
        "env": "prod",
        "alertname": "LaneSessionEscalated",
        "incident": make_event().dedup_key,
        "kind": "escalated",
        "gateway": "prod-1",
        "severity": "error",
        "session_key": "agent:main:telegram:group:-100",
    }
    assert firing["commonLabels"] == alert["labels"]
    assert alert["annotations"]["attempts"] == "3"
    assert alert["annotations"]["last_error"] == "sessions.reset: timeout"
    assert "needs a human" in alert["annotations"]["summary"]


def test_body_is_signed_with_hmac(http: Recorder, full_config: PagingConfig) -> None:
    assert notifier(full_config).send(make_event()).ok
    (request,) = http.to("/hook")
    header = request.headers["X-Lane-Supervisor-Signature"]
    expected = hmac.new(HMAC_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert header == f"sha256={expected}"
    assert verify(request.body, header, HMAC_SECRET)
    assert not verify(request.body + b" ", header, HMAC_SECRET)
    assert not verify(request.body, header, "another-secret")
    assert request.headers["X-Team"] == "infra"
    assert request.headers["Authorization"] == f"Bearer {AUTH_SECRET}"


def test_signature_header_name_is_configurable(http: Recorder, full_config: PagingConfig) -> None:
    assert notifier(full_config, signature_header="X-Hub-Signature-256").send(make_event()).ok
    (request,) = http.to("/hook")
    assert "X-Lane-Supervisor-Signature" not in request.headers
    assert verify(request.body, request.headers["X-Hub-Signature-256"], HMAC_SECRET)


def test_unsigned_without_a_secret(http: Recorder, full_config: PagingConfig) -> None:
    assert notifier(full_config, hmac_secret=None).send(make_event()).ok
    (request,) = http.to("/hook")
    assert "X-Lane-Supervisor-Signature" not in request.headers


def test_acknowledge_is_skipped(http: Recorder, full_config: PagingConfig) -> None:
    result = notifier(full_config).send(make_event(action=Action.ACKNOWLEDGE))
    assert result.status is DeliveryStatus.SKIPPED and result.ok
    assert http.requests == []


def test_gateway_incident_payload() -> None:
    event = make_event(dedup_key="prod-1", key=None, kind="unreachable", severity="critical")
    body = build_payload(event, receiver="r")
    labels = body["alerts"][0]["labels"]
    assert labels["alertname"] == "GatewayUnreachable"
    assert "session_key" not in labels
    assert body["groupKey"] == '{}:{incident="prod-1"}'

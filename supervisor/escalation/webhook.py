"""A generic webhook speaking Alertmanager's webhook payload (version 4), optionally signed.

Anything that already takes Alertmanager notifications (alerta, Grafana OnCall, Matrix or
Teams bridges, an in-house receiver) takes ours unchanged: one alert per notification, grouped
by the incident, `status` firing or resolved, `fingerprint` stable per incident. Alertmanager
has no "acknowledged" state, so acknowledge events are skipped.

Signing: with an HMAC secret, header `X-Lane-Supervisor-Signature: sha256=<hex>` (the name is
configurable) is the HMAC-SHA256 of the exact body bytes sent; a receiver recomputes it over
the raw body before parsing and compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from supervisor.escalation.base import Notifier
from supervisor.escalation.config import WebhookProvider
from supervisor.escalation.http import HttpPoster, Sleep, WallClock
from supervisor.escalation.models import (
    Action,
    DeliveryResult,
    DeliveryStatus,
    IncidentEvent,
    Kind,
    fingerprint,
    rfc3339,
)

#: Alertmanager's endsAt of an alert still firing (Go's zero time)
ZERO_TIME = "0001-01-01T00:00:00Z"
ALERTNAMES: dict[str, str] = {
    Kind.STUCK: "LaneSessionStuck",
    Kind.ESCALATED: "LaneSessionEscalated",
    Kind.UNREACHABLE: "GatewayUnreachable",
    Kind.BREAKER_OPEN: "GatewayZombieBreakerOpen",
}


def _group_key(dedup_key: str) -> str:
    return "{}:{incident=" + json.dumps(dedup_key) + "}"


def build_payload(
    event: IncidentEvent, *, receiver: str, external_url: str | None = None
) -> dict[str, Any]:
    """The Alertmanager v4 webhook body of `event` (trigger or resolve)."""
    status = "resolved" if event.action is Action.RESOLVE else "firing"
    labels = {
        **event.labels,
        "alertname": ALERTNAMES.get(event.kind, "LaneSupervisor"),
        "incident": event.dedup_key,
        "kind": event.kind,
        "gateway": event.gateway,
        "severity": event.severity or "error",
    }
    if event.key is not None:
        labels["session_key"] = event.key
    annotations = {"summary": event.summary}
    for name, value in event.custom_details().items():
        if value is not None and name not in ("gateway", "key"):
            annotations[name] = str(value)
    alert = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(event.started_ms),
        "endsAt": rfc3339(event.ts_ms) if status == "resolved" else ZERO_TIME,
        "generatorURL": external_url or "",
        "fingerprint": fingerprint(event.dedup_key),
    }
    return {
        "version": "4",
        "groupKey": _group_key(event.dedup_key),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"incident": event.dedup_key},
        "commonLabels": dict(labels),
        "commonAnnotations": dict(annotations),
        "externalURL": external_url or "",
        "alerts": [alert],
    }


def sign(body: bytes, secret: str) -> str:
    """The signature header value: `sha256=<hex HMAC-SHA256 of body>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secret: str) -> bool:
    """Whether `header` is the right signature of `body` (for receivers and tests)."""
    return header is not None and hmac.compare_digest(header, sign(body, secret))


class WebhookNotifier(Notifier):
    """POSTs Alertmanager-style JSON to one URL."""

    def __init__(
        self,
        config: WebhookProvider,
        *,
        external_url: str | None = None,
        sleep: Sleep = time.sleep,
        wall_clock: WallClock = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = config.name
        self._config = config
        self._external_url = external_url
        secrets = [config.url.get_secret_value()]
        secrets += [v.get_secret_value() for v in config.secret_headers.values()]
        if config.hmac_secret is not None:
            secrets.append(config.hmac_secret.get_secret_value())
        self._poster = HttpPoster(
            config.name,
            config.retry,
            secrets=secrets,
            sleep=sleep,
            wall_clock=wall_clock,
            transport=transport,
        )

    def send(self, event: IncidentEvent) -> DeliveryResult:
        if event.action is Action.ACKNOWLEDGE:
            return DeliveryResult(
                provider=self.name,
                status=DeliveryStatus.SKIPPED,
                action=event.action,
                dedup_key=event.dedup_key,
                reason="Alertmanager's payload has no acknowledged state",
            )
        payload = build_payload(
            event, receiver=self._config.receiver or self.name, external_url=self._external_url
        )
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {**self._config.headers, "Content-Type": "application/json"}
        headers.update({k: v.get_secret_value() for k, v in self._config.secret_headers.items()})
        if self._config.hmac_secret is not None:
            secret = self._config.hmac_secret.get_secret_value()
            headers[self._config.signature_header] = sign(body, secret)
        return self._poster.post(
            self._config.url.get_secret_value(),
            body,
            headers,
            action=event.action,
            dedup_key=event.dedup_key,
        )

    def close(self) -> None:
        self._poster.close()

"""PagerDuty Events API v2: POST {base_url}/v2/enqueue, one alert per incident dedup key.

trigger opens (or adds to) the alert with the incident's dedup key, acknowledge and resolve
act on it; PagerDuty deduplicates repeated triggers, so a re-notification or a redelivered
task does not page twice. Answers: 202 accepted; 400 invalid event (not retried); 429 and 5xx
retried (see `supervisor.escalation.http`). The routing key goes into the body only, added
right before serialising: `build_event` returns everything else, so it can be logged and tested.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import httpx

from supervisor.escalation.base import Notifier
from supervisor.escalation.config import PagerDutyProvider
from supervisor.escalation.http import HttpPoster, Sleep, WallClock
from supervisor.escalation.models import Action, DeliveryResult, IncidentEvent, rfc3339

ENQUEUE_PATH = "/v2/enqueue"
#: PagerDuty rejects longer dedup keys with 400
MAX_DEDUP_KEY = 255


def pagerduty_dedup_key(dedup_key: str) -> str:
    """The incident's dedup key, or (past 255 characters) a stable shortened form of it."""
    if len(dedup_key) <= MAX_DEDUP_KEY:
        return dedup_key
    digest = hashlib.sha256(dedup_key.encode()).hexdigest()[:16]
    return f"{dedup_key[: MAX_DEDUP_KEY - 17]}#{digest}"


def build_event(
    event: IncidentEvent, *, client: str = "lane-supervisor", external_url: str | None = None
) -> dict[str, Any]:
    """The Events API v2 body for `event`, without `routing_key`."""
    body: dict[str, Any] = {
        "event_action": event.action.value,
        "dedup_key": pagerduty_dedup_key(event.dedup_key),
    }
    if event.action is not Action.TRIGGER:
        return body
    body["payload"] = {
        "summary": event.summary,
        "source": event.gateway,
        "severity": event.severity or "error",
        "timestamp": rfc3339(event.ts_ms),
        "component": event.key or event.gateway,
        "group": event.gateway,
        "class": event.kind,
        "custom_details": event.custom_details(),
    }
    body["client"] = client
    if external_url:
        body["client_url"] = external_url
    return body


class PagerDutyNotifier(Notifier):
    """Sends events to one PagerDuty service integration."""

    def __init__(
        self,
        config: PagerDutyProvider,
        *,
        external_url: str | None = None,
        sleep: Sleep = time.sleep,
        wall_clock: WallClock = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = config.name
        self._config = config
        self._external_url = external_url
        self._poster = HttpPoster(
            config.name,
            config.retry,
            secrets=[config.routing_key.get_secret_value()],
            sleep=sleep,
            wall_clock=wall_clock,
            transport=transport,
        )

    def send(self, event: IncidentEvent) -> DeliveryResult:
        body = {
            "routing_key": self._config.routing_key.get_secret_value(),
            **build_event(event, client=self._config.client, external_url=self._external_url),
        }
        return self._poster.post(
            self._config.base_url + ENQUEUE_PATH,
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
            action=event.action,
            dedup_key=event.dedup_key,
        )

    def close(self) -> None:
        self._poster.close()

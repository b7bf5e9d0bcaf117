"""Slack incoming webhook: one short line a human reads on a phone, at most ~1 per second.

The webhook URL is the secret (anyone holding it can post), so it is masked in logs and never
appears in results. Slack answers 200 "ok"; 400/403/404/410 (invalid_payload, invalid_token,
no_service, channel_is_archived) are permanent; 429 carries Retry-After and is retried.
"""

from __future__ import annotations

import json
import time

import httpx

from supervisor.escalation.base import Notifier
from supervisor.escalation.config import SlackProvider
from supervisor.escalation.http import HttpPoster, Sleep, WallClock
from supervisor.escalation.models import Action, DeliveryResult, IncidentEvent
from supervisor.escalation.ratelimit import MinInterval, shared_limiter

_EMOJI = {"critical": ":red_circle:", "error": ":large_orange_circle:", "warning": ":warning:"}


def _escape(text: str) -> str:
    """Slack's three control characters, escaped as its docs ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_message(event: IncidentEvent, *, external_url: str | None = None) -> dict[str, str]:
    """`{"text": ...}`: severity, the summary, then the facts that help decide what to do."""
    if event.action is Action.RESOLVE:
        head = ":white_check_mark: *RESOLVED*"
    elif event.action is Action.ACKNOWLEDGE:
        head = ":eyes: *ACKNOWLEDGED*"
    else:
        severity = event.severity or "error"
        head = f"{_EMOJI.get(severity, ':information_source:')} *{severity.upper()}*"
    text = f"{head} {_escape(event.summary)}"
    facts = []
    if event.action is Action.TRIGGER:
        if event.attempts:
            facts.append(f"{event.attempts} attempts")
        if event.last_error:
            facts.append(f"last error: {_escape(event.last_error[:200])}")
    facts.append(f"incident `{_escape(event.dedup_key)}`")
    text += "\n" + " · ".join(facts)
    if event.action is Action.TRIGGER:
        text += f"\nstory: `{_escape(event.story)}`"
    if external_url:
        text += f"\n<{external_url}|lane-supervisor>"
    return {"text": text}


class SlackNotifier(Notifier):
    """Posts to one incoming webhook, spaced by `min_interval`."""

    def __init__(
        self,
        config: SlackProvider,
        *,
        external_url: str | None = None,
        sleep: Sleep = time.sleep,
        wall_clock: WallClock = time.time,
        limiter: MinInterval | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = config.name
        self._config = config
        self._external_url = external_url
        url = config.webhook_url.get_secret_value()
        self._poster = HttpPoster(
            config.name,
            config.retry,
            secrets=[url],
            sleep=sleep,
            wall_clock=wall_clock,
            limiter=limiter or shared_limiter(url, config.min_interval),
            transport=transport,
        )

    def send(self, event: IncidentEvent) -> DeliveryResult:
        body = json.dumps(build_message(event, external_url=self._external_url)).encode()
        return self._poster.post(
            self._config.webhook_url.get_secret_value(),
            body,
            {"Content-Type": "application/json"},
            action=event.action,
            dedup_key=event.dedup_key,
        )

    def close(self) -> None:
        self._poster.close()

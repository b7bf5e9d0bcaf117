"""Which providers an incident goes to (pure), and one delivery to one provider (never raises).

Routing: the first `[[paging.routes]]` entry whose match (gateway globs, label globs) and
`min_severity` fit the event wins, else `[paging.default_route]`. The severity is the
config's mapping of the event's kind, filled in here so providers and routes see the same one.

Sending: `deliver(provider, event, config)` builds that provider's notifier from the config,
sends, closes, and returns a `DeliveryResult` whatever happens -- one Celery task per provider
delivery stays trivial, and a provider that fails (or has a bug) costs only its own delivery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx

from supervisor.escalation.base import Notifier
from supervisor.escalation.config import (
    PagerDutyProvider,
    PagingConfig,
    Route,
    SlackProvider,
    WebhookProvider,
)
from supervisor.escalation.http import redact
from supervisor.escalation.models import DeliveryResult, DeliveryStatus, IncidentEvent
from supervisor.escalation.pagerduty import PagerDutyNotifier
from supervisor.escalation.ratelimit import MinInterval
from supervisor.escalation.slack import SlackNotifier
from supervisor.escalation.webhook import WebhookNotifier

log = logging.getLogger(__name__)

#: builds the notifier of one named provider (tests swap in recording stubs)
NotifierFactory = Callable[[str, PagingConfig], Notifier]


def with_severity(event: IncidentEvent, config: PagingConfig) -> IncidentEvent:
    """`event` with its severity from the config's mapping, unless it already has one."""
    if event.severity is not None:
        return event
    return event.model_copy(update={"severity": config.severity_for(event.kind)})


def route_for(event: IncidentEvent, config: PagingConfig) -> Route | None:
    """The first route matching the event, else the default route (None: paging is off)."""
    severity = with_severity(event, config).severity or "error"
    for route in config.routes:
        if route.matches(event.gateway, event.labels, severity):
            return route
    return config.default_route


def providers_for(event: IncidentEvent, config: PagingConfig) -> tuple[str, ...]:
    route = route_for(event, config)
    return () if route is None else route.providers


def secrets_of(provider: PagerDutyProvider | WebhookProvider | SlackProvider) -> list[str]:
    """Every secret value a provider holds, to mask in anything we report."""
    if isinstance(provider, PagerDutyProvider):
        return [provider.routing_key.get_secret_value()]
    if isinstance(provider, SlackProvider):
        return [provider.webhook_url.get_secret_value()]
    values = [provider.url.get_secret_value()]
    values += [v.get_secret_value() for v in provider.secret_headers.values()]
    if provider.hmac_secret is not None:
        values.append(provider.hmac_secret.get_secret_value())
    return values


def build_notifier(
    name: str,
    config: PagingConfig,
    *,
    sleep: Callable[[float], None] = time.sleep,
    wall_clock: Callable[[], float] = time.time,
    limiter: MinInterval | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Notifier:
    """The notifier of provider `name` (KeyError when there is none)."""
    provider = config.provider(name)
    url = config.external_url
    if isinstance(provider, PagerDutyProvider):
        return PagerDutyNotifier(
            provider, external_url=url, sleep=sleep, wall_clock=wall_clock, transport=transport
        )
    if isinstance(provider, WebhookProvider):
        return WebhookNotifier(
            provider, external_url=url, sleep=sleep, wall_clock=wall_clock, transport=transport
        )
    return SlackNotifier(
        provider,
        external_url=url,
        sleep=sleep,
        wall_clock=wall_clock,
        limiter=limiter,
        transport=transport,
    )


def deliver(
    provider_name: str,
    event: IncidentEvent,
    config: PagingConfig,
    *,
    route: str | None = None,
    factory: NotifierFactory = build_notifier,
) -> DeliveryResult:
    """Send `event` to one provider; every failure comes back as a result, none is raised."""
    event = with_severity(event, config)

    def failed(reason: str, status: DeliveryStatus = DeliveryStatus.PERMANENT) -> DeliveryResult:
        return DeliveryResult(
            provider=provider_name,
            status=status,
            action=event.action,
            dedup_key=event.dedup_key,
            route=route,
            reason=reason,
        )

    if provider_name not in config.providers:
        return failed("the provider is not (or no longer) in the [paging] configuration")
    try:
        with factory(provider_name, config) as notifier:
            result = notifier.send(event)
    except Exception as exc:
        # a provider bug costs its own delivery only; retryable, because the same exception
        # class also covers a task's time limit firing mid-send (the caller caps redeliveries)
        secrets = [s for p in config.providers.values() for s in secrets_of(p)]
        text = redact(f"{type(exc).__name__}: {exc}", secrets)
        log.error("%s: %s %s crashed: %s", provider_name, event.action, event.dedup_key, text)
        return failed(f"internal error ({type(exc).__name__})", DeliveryStatus.RETRYABLE)
    return result if route is None else result.model_copy(update={"route": route})


def dispatch(
    event: IncidentEvent, config: PagingConfig, *, factory: NotifierFactory = build_notifier
) -> list[DeliveryResult]:
    """Send `event` to every provider of its route, one after the other; one result each."""
    route = route_for(event, config)
    if route is None:
        return []
    return [deliver(p, event, config, route=route.name, factory=factory) for p in route.providers]

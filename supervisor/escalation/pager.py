"""`ProviderPager`: the engine's `Pager` (`supervisor.recovery.pager`) that pages the providers.

`trigger` and `resolve` never raise (a Redis or provider failure is logged; paging must not
break recovery). Each turns into Redis state first (`StateStore.incidents`, atomic), then into
deliveries: one `Delivery(dedup_key, provider, seq)` per provider, handed to `submit`. By
default `submit` runs the delivery inline; the engine passes one that enqueues a Celery task
calling `ProviderPager.run(delivery)`. Task arguments are names and numbers only: the task
re-reads the incident, claims the delivery, sends, and records the outcome (no secret travels).

`tick()` is the periodic, level-triggered part (call it from beat every minute or so): it
re-notifies open incidents whose `renotify_interval` passed and resubmits deliveries that
failed retryably once their backoff ("not before", stored in Redis) has passed, so no long
Celery countdown is ever needed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from supervisor.core.backoff import compute_backoff
from supervisor.escalation.config import PagingConfig
from supervisor.escalation.dispatch import (
    NotifierFactory,
    build_notifier,
    deliver,
    providers_for,
    with_severity,
)
from supervisor.escalation.models import (
    Action,
    DeliveryResult,
    IncidentEvent,
    Kind,
    clean_details,
)
from supervisor.state.incidents import Incident, OpenDecision
from supervisor.state.silences import Silence
from supervisor.state.store import StateStore

log = logging.getLogger(__name__)


class Delivery(BaseModel):
    """One notification to one provider: the whole argument list of a delivery task."""

    model_config = ConfigDict(frozen=True)

    dedup_key: str
    provider: str
    seq: int

    def as_task_kwargs(self) -> dict[str, Any]:
        return self.model_dump()


class Opened(BaseModel):
    """What `ProviderPager.open` did."""

    model_config = ConfigDict(frozen=True)

    decision: OpenDecision | None = None
    silenced: Silence | None = None
    deliveries: tuple[Delivery, ...] = ()


def normalise_kind(kind: str, key: str | None, details: dict[str, object]) -> str:
    """The paging kind of what the engine reported.

    A gateway-level failure arrives with its error kind ("timeout", "auth", "overloaded"...):
    all of them page as `unreachable` (the original kind stays in the details as error_kind).
    """
    if key is None and kind not in (Kind.BREAKER_OPEN, Kind.UNREACHABLE):
        details.setdefault("error_kind", kind)
        return Kind.UNREACHABLE.value
    return kind


def event_of(incident: Incident) -> IncidentEvent:
    """The event of an incident's current notification, for a provider."""
    resolved = incident.status == "resolved"
    return IncidentEvent.model_validate(
        {
            "action": Action.RESOLVE if resolved else Action.TRIGGER,
            "dedup_key": incident.dedup_key,
            "gateway": incident.gateway,
            "key": incident.key,
            "kind": incident.kind,
            "severity": incident.severity,
            "labels": incident.labels,
            "details": incident.details,
            "started_ms": incident.opened_ms,
            "ts_ms": incident.resolved_ms
            if incident.resolved_ms is not None
            else incident.notified_ms,
            "seq": incident.seq,
        }
    )


class ProviderPager:
    """Opens, re-notifies and resolves incidents, and delivers them to the providers."""

    def __init__(
        self,
        config: PagingConfig | Callable[[], PagingConfig],
        store: StateStore,
        *,
        labels_for: Callable[[str], Mapping[str, str]] | None = None,
        submit: Callable[[Delivery], None] | None = None,
        factory: NotifierFactory = build_notifier,
        clock: Callable[[], float] = time.time,
        redelivery_base_s: float = 30.0,
        redelivery_cap_s: float = 900.0,
        max_deliveries: int = 8,
        grace_s: float = 60.0,
    ) -> None:
        """`labels_for(gateway)` gives the fleet file's labels (for routing); `submit` runs or
        enqueues a delivery; a failed delivery is tried again after an exponential backoff
        (base, cap), at most `max_deliveries` times per notification; a delivery never tried
        is picked up by `tick` after `grace_s` (its submission was lost)."""
        self._config = config if callable(config) else (lambda: config)
        self.incidents = store.incidents
        self.silences = store.silences
        self._labels_for = labels_for
        self._submit = submit or self._run_inline
        self._factory = factory
        self._clock = clock
        self._base_s = redelivery_base_s
        self._cap_s = redelivery_cap_s
        self._max_deliveries = max_deliveries
        self._grace_ms = int(grace_s * 1000)
        self._owner = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def config(self) -> PagingConfig:
        return self._config()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _run_inline(self, delivery: Delivery) -> None:
        self.run(delivery)

    # -- what recovery calls ---------------------------------------------------------------

    def trigger(
        self,
        dedup_key: str,
        *,
        gateway: str,
        key: str | None,
        kind: str,
        details: dict[str, object],
    ) -> None:
        """Open (or re-notify) the incident and deliver it; never raises."""
        try:
            self.open(self.event(dedup_key, gateway=gateway, key=key, kind=kind, details=details))
        except Exception:
            log.exception("paging: could not trigger incident %s", dedup_key)

    def resolve(self, dedup_key: str, *, gateway: str, key: str | None) -> None:
        """Resolve the incident if it is open and deliver the resolve; never raises."""
        try:
            self.close(dedup_key)
        except Exception:
            log.exception("paging: could not resolve incident %s", dedup_key)

    def silenced(self, gateway: str, key: str | None = None) -> Silence | None:
        """The silence covering the gateway or session, if any; raises StateError."""
        return self.silences.is_silenced(gateway, key)

    # -- the work --------------------------------------------------------------------------

    def event(
        self,
        dedup_key: str,
        *,
        gateway: str,
        key: str | None,
        kind: str,
        details: Mapping[str, object],
    ) -> IncidentEvent:
        """The trigger event of what the engine reported, with labels and severity."""
        extra = dict(details)
        kind = normalise_kind(kind, key, extra)
        if "last_error" not in extra and extra.get("error") is not None:
            extra["last_error"] = extra["error"]
        labels: dict[str, str] = {}
        if self._labels_for is not None:
            try:
                labels = dict(self._labels_for(gateway))
            except KeyError:
                labels = {}
        now = self._now_ms()
        event = IncidentEvent(
            dedup_key=dedup_key,
            gateway=gateway,
            key=key,
            kind=kind,
            labels=labels,
            details=clean_details(extra),
            started_ms=now,
            ts_ms=now,
        )
        return with_severity(event, self.config)

    def open(self, event: IncidentEvent) -> Opened:
        """Open or re-notify `event`'s incident, unless silenced; submit what must be sent."""
        config = self.config
        event = with_severity(event, config)
        silence = self.silences.is_silenced(event.gateway, event.key)
        if silence is not None:
            self.incidents.touch(event.dedup_key)
            log.info("paging: %s is silenced (%s)", event.dedup_key, silence.reason)
            return Opened(silenced=silence)
        providers = providers_for(event, config)
        decision = self.incidents.open_or_renotify(
            event,
            providers=providers,
            renotify_after_s=config.renotify_interval,
            now_ms=self._now_ms(),
        )
        if not decision.send:
            return Opened(decision=decision)
        if not providers:
            log.warning(
                "paging: incident %s (%s): no provider to send to", event.dedup_key, event.kind
            )
        deliveries = tuple(
            Delivery(dedup_key=event.dedup_key, provider=p, seq=decision.seq) for p in providers
        )
        for delivery in deliveries:
            self._submit(delivery)
        return Opened(decision=decision, deliveries=deliveries)

    def close(self, dedup_key: str) -> tuple[Delivery, ...]:
        """Resolve the incident (if open, and only once) and submit the resolve deliveries."""
        incident = self.incidents.resolve(dedup_key, now_ms=self._now_ms())
        if incident is None:
            return ()
        deliveries = tuple(
            Delivery(dedup_key=dedup_key, provider=p, seq=incident.seq) for p in incident.providers
        )
        for delivery in deliveries:
            self._submit(delivery)
        return deliveries

    def run(self, delivery: Delivery) -> DeliveryResult | None:
        """Send one delivery if it is still due; None when there was nothing to do.

        Re-reads the incident, claims the (incident, provider) delivery, sends, records. Safe
        to call twice (a redelivered task): the second finds it done or in flight. Raises
        StateError when Redis fails (the delivery stays due; `tick` finds it again).
        """
        config = self.config
        incident = self.incidents.get(delivery.dedup_key)
        if incident is None or incident.seq != delivery.seq:
            return None
        owner = f"{self._owner}:{uuid.uuid4().hex[:12]}"
        claim = self.incidents.claim_delivery(
            delivery.dedup_key,
            delivery.provider,
            delivery.seq,
            owner=owner,
            lease_ms=self._lease_ms(config, delivery.provider),
            now_ms=self._now_ms(),
        )
        if claim != "ok":
            log.debug("paging: %s -> %s not sent: %s", delivery.dedup_key, delivery.provider, claim)
            return None
        result = deliver(delivery.provider, event_of(incident), config, factory=self._factory)
        previous = incident.deliveries.get(delivery.provider)
        tries = previous.tries + 1 if previous and previous.seq == delivery.seq else 1
        give_up = result.retryable and tries >= self._max_deliveries
        now = self._now_ms()
        not_before = 0
        if result.retryable and not give_up:
            wait_s = compute_backoff(
                tries,
                base_s=self._base_s,
                factor=2.0,
                max_s=self._cap_s,
                jitter=0.2,
                seed=f"{delivery.dedup_key}|{delivery.provider}|{delivery.seq}",
            )
            not_before = now + int(max(wait_s, result.retry_after_s or 0.0) * 1000)
        if give_up:
            log.error(
                "paging: %s -> %s: giving up after %d deliveries: %s",
                delivery.dedup_key,
                delivery.provider,
                tries,
                result.reason,
            )
        self.incidents.record_delivery(
            result, delivery.seq, owner=owner, not_before_ms=not_before, give_up=give_up, now_ms=now
        )
        return result

    def tick(self) -> list[Delivery]:
        """Re-notify what is due, resubmit failed deliveries that are due; what was submitted."""
        config = self.config
        now = self._now_ms()
        submitted: list[Delivery] = []
        if config.renotify_interval > 0:
            for incident in self.incidents.list_open():
                if now - incident.notified_ms >= config.renotify_interval * 1000:
                    opened = self.open(event_of(incident))
                    submitted.extend(opened.deliveries)
        for incident, provider in self.incidents.due_deliveries(
            now_ms=now, grace_ms=self._grace_ms
        ):
            if any(d.dedup_key == incident.dedup_key and d.seq > incident.seq for d in submitted):
                continue  # just re-notified: the new notification supersedes this one
            delivery = Delivery(dedup_key=incident.dedup_key, provider=provider, seq=incident.seq)
            self._submit(delivery)
            submitted.append(delivery)
        return submitted

    def acknowledge(self, dedup_key: str) -> list[DeliveryResult]:
        """Tell every provider of an open incident that a human is on it (best effort, inline;
        e.g. when an operator silences it). Not tracked: an acknowledge is not retried."""
        incident = self.incidents.get(dedup_key)
        if incident is None or incident.status != "open":
            return []
        event = event_of(incident).model_copy(update={"action": Action.ACKNOWLEDGE})
        return [deliver(p, event, self.config, factory=self._factory) for p in incident.targets]

    @staticmethod
    def _lease_ms(config: PagingConfig, provider: str) -> int:
        """Longer than one delivery can take: every try timing out and every wait at the cap."""
        try:
            retry = config.provider(provider).retry
        except KeyError:
            retry = config.retry
        return int((retry.max_tries * (retry.timeout + retry.cap) + 30) * 1000)

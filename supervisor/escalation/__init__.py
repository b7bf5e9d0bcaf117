"""Paging: tell humans about incidents the supervisor cannot fix, and when they are over.

Layers, bottom up (each module imports only those above it in this list):

* `models`, `errors`     events, results, kinds, severities; the PagingError tree
* `config`               the fleet file's `[paging]` table (`parse_paging`), secrets loaded once
* `http`, `ratelimit`    one retrying POST (httpx translated here), one-per-interval spacing
* `base` + providers     `Notifier` / `RecordingNotifier`; `pagerduty`, `webhook`, `slack`
* `dispatch`             routing (pure) and `deliver(provider, event, config)` (never raises)
* `silences`, `incidents` Redis state: one incident per dedup key, per-provider deliveries
* `pager`                `Pager`: what the engine calls (`trigger`, `resolve`, `run`, `tick`)

No Celery here: the engine wraps `Pager.run` and `Pager.tick` in tasks. (`dispatch.dispatch`
is not re-exported: the name would shadow its module.)
"""

from supervisor.escalation.base import Notifier, RecordingNotifier
from supervisor.escalation.config import PagingConfig, parse_paging
from supervisor.escalation.dispatch import deliver, providers_for, route_for
from supervisor.escalation.errors import (
    DeliveryFailed,
    DeliveryRejected,
    DeliveryRetryable,
    PagingError,
    SilenceError,
)
from supervisor.escalation.incidents import Incident, Incidents, OpenDecision
from supervisor.escalation.models import (
    Action,
    DeliveryResult,
    DeliveryStatus,
    IncidentEvent,
    Kind,
    dedup_key_for,
)
from supervisor.escalation.pager import Delivery, Opened, Pager
from supervisor.escalation.silences import Silence

__all__ = [
    "Action",
    "Delivery",
    "DeliveryFailed",
    "DeliveryRejected",
    "DeliveryResult",
    "DeliveryRetryable",
    "DeliveryStatus",
    "Incident",
    "IncidentEvent",
    "Incidents",
    "Kind",
    "Notifier",
    "OpenDecision",
    "Opened",
    "Pager",
    "PagingConfig",
    "PagingError",
    "RecordingNotifier",
    "Silence",
    "SilenceError",
    "dedup_key_for",
    "deliver",
    "parse_paging",
    "providers_for",
    "route_for",
]

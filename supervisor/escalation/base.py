"""The one shape every provider has, and a recording stub with the same shape for tests.

A `Notifier` turns an `IncidentEvent` into one delivery and reports a `DeliveryResult`; it
never raises for a failed delivery (dramatiq's backends-plus-stub layout: the engine's tests
use `RecordingNotifier` and never need an HTTP server).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from types import TracebackType

from supervisor.escalation.models import DeliveryResult, DeliveryStatus, IncidentEvent


class Notifier(ABC):
    """Sends incident events to one configured provider."""

    #: the provider's name in the `[paging.providers]` table
    name: str

    @abstractmethod
    def send(self, event: IncidentEvent) -> DeliveryResult:
        """Deliver `event`; a failure is a result (retryable or permanent), not an exception."""

    def close(self) -> None:
        """Release connections; the notifier is not used afterwards (nothing to do by default)."""
        return None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RecordingNotifier(Notifier):
    """Records every event; answers with scripted statuses in order, then `ok`. Thread-safe."""

    def __init__(self, name: str = "stub", script: Iterable[DeliveryStatus] = ()) -> None:
        self.name = name
        self.sent: list[IncidentEvent] = []
        self._script = list(script)
        self._lock = threading.Lock()

    def send(self, event: IncidentEvent) -> DeliveryResult:
        with self._lock:
            self.sent.append(event)
            status = self._script.pop(0) if self._script else DeliveryStatus.OK
        return DeliveryResult(
            provider=self.name,
            status=status,
            action=event.action,
            dedup_key=event.dedup_key,
            requests=1,
            reason=None if status is DeliveryStatus.OK else f"scripted {status.value}",
        )

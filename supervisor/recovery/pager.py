"""The engine's one paging handle: the `Pager` protocol, and `AuditOnlyPager`, which pages nobody.

Recovery calls `trigger` and `resolve` (they never raise: paging must not break recovery) and
asks `silenced` before acting; the Celery tasks call `run` and `tick`. The implementation that
pages humans is `supervisor.escalation.pager.ProviderPager`; tests pass recorders.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from supervisor.escalation.models import DeliveryResult
    from supervisor.escalation.pager import Delivery
    from supervisor.state.silences import Silence

log = logging.getLogger(__name__)


class Pager(Protocol):
    """Where escalations and their resolutions go."""

    def trigger(
        self,
        dedup_key: str,
        *,
        gateway: str,
        key: str | None,
        kind: str,
        details: dict[str, object],
    ) -> None: ...

    def resolve(self, dedup_key: str, *, gateway: str, key: str | None) -> None: ...

    def silenced(self, gateway: str, key: str | None = None) -> Silence | None:
        """The silence covering the gateway or session, if any (it may also stop actions)."""
        ...

    def run(self, delivery: Delivery) -> DeliveryResult | None:
        """Send one submitted delivery if it is still due; None when there was nothing to do."""
        ...

    def tick(self) -> Sequence[Delivery]:
        """Re-notify and resubmit what is due (beat calls it); what was submitted."""
        ...


class AuditOnlyPager:
    """A pager that pages nobody: escalations are in the audit stream only, nothing is silenced."""

    def trigger(
        self,
        dedup_key: str,
        *,
        gateway: str,
        key: str | None,
        kind: str,
        details: dict[str, object],
    ) -> None:
        log.warning("escalation %s (%s) recorded; no paging provider configured", dedup_key, kind)

    def resolve(self, dedup_key: str, *, gateway: str, key: str | None) -> None:
        log.info("escalation %s resolved", dedup_key)

    def silenced(self, gateway: str, key: str | None = None) -> Silence | None:
        return None

    def run(self, delivery: Delivery) -> DeliveryResult | None:
        return None

    def tick(self) -> Sequence[Delivery]:
        return ()

"""Paging errors, under the project's one root; messages name the provider, never a secret.

    SupervisorError                     (supervisor.errors)
    └── PagingError                     anything the paging layer raises on purpose
        ├── DeliveryFailed              one delivery to one provider did not get through
        │   ├── DeliveryRetryable       429, 5xx, network or timeout: later may work
        │   └── DeliveryRejected        another 4xx (or a redirect): retrying will not help
        └── SilenceError                a silence target or duration that cannot be used

Providers do not raise these into their callers: `Notifier.send` returns a `DeliveryResult`
and `DeliveryResult.raise_for_status()` turns a failed one into the matching exception, for a
caller (a Celery task) that wants to retry by exception. Configuration problems are
`supervisor.errors.FleetFileError`, because the `[paging]` table lives in the fleet file.
httpx exceptions are translated once, in `supervisor.escalation.http`, and not chained: their
text may quote a URL, and for Slack and most webhooks the URL is the secret.
"""

from __future__ import annotations

from supervisor.errors import SupervisorError


class PagingError(SupervisorError):
    """Something in the paging layer went wrong; the message holds no secret."""


class DeliveryFailed(PagingError):
    """One delivery (trigger, acknowledge or resolve) to one provider did not get through."""

    retryable = False

    def __init__(
        self,
        provider: str,
        reason: str,
        *,
        route: str | None = None,
        http_status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.provider = provider
        self.route = route
        self.reason = reason
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        where = f"provider {provider!r}"
        if route is not None:
            where += f" (route {route!r})"
        super().__init__(f"{where}: {reason}")


class DeliveryRetryable(DeliveryFailed):
    """Rate limited, a server error, or no answer: the same delivery may work later."""

    retryable = True


class DeliveryRejected(DeliveryFailed):
    """The provider refused the delivery for good (bad routing key, bad payload, gone)."""


class SilenceError(PagingError):
    """A silence whose target or duration cannot be used."""

"""Every error lane-supervisor raises on purpose, under one root.

    SupervisorError
    ├── ConfigError                 bad settings or fleet file (CLI exit 64)
    │   └── FleetFileError          names the file, the gateway and the field
    ├── GatewayError                names the gateway, never its token
    │   ├── GatewayUnreachable      refused, DNS, closed before the handshake
    │   │   └── GatewayOverloaded   closed during connect: retry later, not an auth failure
    │   ├── GatewayTimeout          no answer within the configured time
    │   ├── GatewayAuthError
    │   │   ├── DeviceNotPaired     device identity required / approval pending
    │   │   ├── TokenMismatch       the gateway refused the token
    │   │   └── MissingScope        connected, but a needed operator scope was not granted
    │   ├── ProtocolError           malformed, oversized or unexpected frame
    │   ├── MethodMissing           the gateway does not offer a method
    │   └── GatewayCallError        the gateway answered ok:false (code, message, reason)
    ├── StateError                  Redis state (leases, counters, audit); never its password
    │   ├── RedisUnavailable        unreachable, timed out, loading, or refusing writes
    │   ├── RedisNotDurable         would lose or evict state: do not act, escalate
    │   ├── EmbeddedRedisError      the bundled valkey-server is missing or would not start
    │   └── LeaseLost               our lease expired or was taken: stop before acting
    └── PagingError                 anything the paging layer raises on purpose
        ├── DeliveryFailed          one delivery to one provider did not get through
        │   ├── DeliveryRetryable   429, 5xx, network or timeout: later may work
        │   └── DeliveryRejected    another 4xx (or a redirect): retrying will not help
        └── SilenceError            a silence target or duration that cannot be used

Transport exceptions (websockets, OSError, asyncio timeouts) are translated once, in
`supervisor.gateway.client`, with `raise ... from exc`; redis-py exceptions likewise, in
`supervisor.state.connection`; httpx exceptions in `supervisor.escalation.http`, and not
chained there: their text may quote a URL, and for Slack and most webhooks the URL is the
secret. Providers do not raise paging errors into their callers: `Notifier.send` returns a
`DeliveryResult`, and `DeliveryResult.error()` names the matching exception. A `[paging]`
table that cannot be used is a `FleetFileError`, since it lives in the fleet file.
"""

from __future__ import annotations


class SupervisorError(Exception):
    """Base class of every error lane-supervisor raises on purpose."""


class ConfigError(SupervisorError):
    """Settings or a fleet file that cannot be used."""


class FleetFileError(ConfigError):
    """A fleet file that cannot be used, located to file, gateway and field."""

    def __init__(
        self, path: str, problem: str, *, gateway: str | None = None, field: str | None = None
    ) -> None:
        self.path = path
        self.gateway = gateway
        self.field = field
        self.problem = problem
        where = path
        if gateway is not None:
            where += f": gateway {gateway!r}"
        if field is not None:
            where += f": field {field!r}"
        super().__init__(f"{where}: {problem}")


class GatewayError(SupervisorError):
    """Something went wrong talking to one gateway."""

    #: short machine-readable kind, used in JSON output and metrics labels
    kind = "error"
    retryable = False

    def __init__(self, gateway: str, message: str) -> None:
        self.gateway = gateway
        self.detail = message
        super().__init__(f"gateway {gateway!r}: {message}")


class GatewayUnreachable(GatewayError):
    """The gateway refused the connection or closed it before the handshake."""

    kind = "unreachable"
    retryable = True


class GatewayOverloaded(GatewayUnreachable):
    """The gateway closed the socket during connect (it does so when over capacity)."""

    kind = "overloaded"


class GatewayTimeout(GatewayError):
    """The gateway did not answer in time."""

    kind = "timeout"
    retryable = True


class GatewayAuthError(GatewayError):
    """The gateway refused or limited our credentials."""

    kind = "auth"


class DeviceNotPaired(GatewayAuthError):
    """The gateway wants a (paired) device identity before it grants scopes."""

    kind = "not_paired"


class ApprovalPending(DeviceNotPaired):
    """A paired device asked for more scopes (or another role) than approved: the gateway
    filed an approval request and refuses the device until someone approves it (2026.5.x)."""

    kind = "approval_pending"

    def __init__(self, gateway: str, message: str, *, request_id: str | None) -> None:
        self.request_id = request_id
        super().__init__(gateway, message)


class TokenMismatch(GatewayAuthError):
    """The gateway refused the token."""

    kind = "token_mismatch"


class MissingScope(GatewayAuthError):
    """Connected, but an operator scope we need was not granted."""

    kind = "missing_scope"

    def __init__(self, gateway: str, message: str, *, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(gateway, message)


class ProtocolError(GatewayError):
    """A frame that is not what the protocol says: malformed, oversized or unexpected."""

    kind = "protocol"


class MethodMissing(GatewayError):
    """The gateway does not offer a method we need."""

    kind = "method_missing"

    def __init__(self, gateway: str, method: str) -> None:
        self.method = method
        super().__init__(gateway, f"the gateway does not offer method {method!r}")


class GatewayCallError(GatewayError):
    """The gateway answered a request with ok:false."""

    kind = "call_failed"

    def __init__(
        self,
        gateway: str,
        method: str,
        code: str,
        message: str,
        *,
        reason: str | None = None,
        retryable: bool = False,
    ) -> None:
        self.method = method
        self.code = code
        self.reason = reason
        self.retryable = retryable
        text = f"{method} failed: {code}: {message}"
        if reason:
            text += f" (reason: {reason})"
        super().__init__(gateway, text)


class StateError(SupervisorError):
    """Shared state in Redis could not be read or written as intended.

    Messages name the server by its URL with any password masked, never the password itself.
    """


class RedisUnavailable(StateError):
    """Redis cannot be reached or cannot take the command now (refused, timeout, loading, OOM).

    Retryable: the caller backs off and decides again later; it must not act meanwhile.
    """


class RedisNotDurable(StateError):
    """Redis would lose or evict our state (no persistence, an eviction policy).

    Leases, fencing tokens and attempt caps are only as safe as the server keeping them, so the
    engine refuses to act on such a server and escalates instead.
    """

    def __init__(self, url: str, problems: list[str]) -> None:
        self.url = url
        self.problems = problems
        super().__init__(f"Redis at {url} is not safe to act on: " + "; ".join(problems))


class EmbeddedRedisError(StateError):
    """The embedded valkey-server is missing, or it exited or never answered when started."""


class LeaseLost(StateError):
    """A lease we held expired or now belongs to someone else: whatever we meant to do, don't."""

    def __init__(self, gateway: str, key: str, token: int) -> None:
        self.gateway = gateway
        self.key = key
        self.token = token
        super().__init__(
            f"gateway {gateway!r}: lease on session {key!r} (fencing token {token}) is lost"
        )


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

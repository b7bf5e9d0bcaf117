"""One HTTP POST with retries, shared by every provider; httpx is translated here and only here.

Retry policy (one delivery = up to `max_tries` requests):
* 2xx: delivered. 429, 408, 5xx, a timeout or a network error: retryable. Any other status
  (400, 401, 403, 404, 410, a 3xx): permanent, no retry -- resending a payload the provider
  refused only hides the mistake.
* The wait before the next request is the provider's Retry-After (seconds or an HTTP date)
  when it sent one, else `supervisor.core.backoff.compute_backoff` (exponential, capped, with
  deterministic jitter seeded by provider and dedup key). A wait longer than `cap` is not slept
  here: the delivery ends as retryable with `retry_after_s`, and the caller stores "not before"
  (stack notes: long waits do not belong inside a task).

Secrets: a Slack or webhook URL is itself a secret, and httpx logs every request's URL at INFO.
Every secret a poster uses is registered with a filter on the `httpx` logger that masks it,
results carry only our own reasons (status codes, a redacted, shortened response snippet, an
exception's class name) and httpx exceptions are never chained to ours.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpcore
import httpx

from supervisor.core.backoff import compute_backoff
from supervisor.escalation.config import RetryPolicy
from supervisor.escalation.models import Action, DeliveryResult, DeliveryStatus
from supervisor.escalation.ratelimit import MinInterval

log = logging.getLogger(__name__)

USER_AGENT = "lane-supervisor"
#: characters of a response body quoted in a failure reason
SNIPPET_CHARS = 200
MASK = "***"

Sleep = Callable[[float], None]
WallClock = Callable[[], float]


class _SecretMask(logging.Filter):
    """Masks registered secrets in records of the logger it is attached to."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        if len(secret) >= 4:
            with self._lock:
                self._secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if not secrets:
            return True
        text = record.getMessage()
        masked = redact(text, secrets)
        if masked != text:
            record.msg, record.args = masked, None
        return True


#: httpx logs "HTTP Request: POST <url> ..." on the "httpx" logger itself (httpcore's own
#: records name hosts, never paths); a logger's filters see only records logged to it
_MASK_FILTER = _SecretMask()
logging.getLogger("httpx").addFilter(_MASK_FILTER)


def register_secret(secret: str) -> None:
    """Mask `secret` (and its URL-normalised form) in httpx's log records."""
    _MASK_FILTER.add(secret)
    with contextlib.suppress(httpx.InvalidURL, TypeError):
        _MASK_FILTER.add(str(httpx.URL(secret)))


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret in it replaced by `***` (longest first)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if unusable.

    A date in the past means 0. `now` is the wall clock (time.time()).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT
            return None
        return max(0.0, when.timestamp() - now)
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        return None
    return seconds


def _retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


class _Watch:
    """The sockets one request opened, shut down when its deadline passes.

    httpx's timeouts are per operation: a server that sends one byte a second never trips a
    10 s read timeout. A timer that shuts the request's sockets down at the delivery's
    deadline wakes the blocked read at once (the read fails, httpx raises), which no per-read
    timeout and no abandoned thread can do. Connections are not kept alive between requests
    (see `HttpPoster`), so every socket a request uses was opened under its watch.
    """

    _current = threading.local()

    def __init__(self, seconds: float) -> None:
        self._streams: list[httpcore.NetworkStream] = []
        self._lock = threading.Lock()
        self.fired = False
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watch:
        _Watch._current.watch = self
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()
        _Watch._current.watch = None

    @classmethod
    def register(cls, stream: httpcore.NetworkStream) -> None:
        watch: _Watch | None = getattr(cls._current, "watch", None)
        if watch is None:
            return
        with watch._lock:
            watch._streams.append(stream)
            fired = watch.fired
        if fired:
            _shut(stream)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            streams = list(self._streams)
        for stream in streams:
            _shut(stream)


def _shut(stream: httpcore.NetworkStream) -> None:
    sock = stream.get_extra_info("socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _WatchedStream(httpcore.NetworkStream):
    """A network stream registered with the current watch (TLS included: a new stream)."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        _Watch.register(inner)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _WatchedStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _WatchedBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _WatchedStream(
            self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _WatchedStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _watched_transport() -> httpx.HTTPTransport:
    """httpx's own transport, its connections opened through `_WatchedBackend`."""
    transport = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
    pool = transport._pool
    # httpcore builds each connection with the pool's backend at the moment it opens it
    if not hasattr(pool, "_network_backend"):  # pragma: no cover - an httpcore we do not know
        raise RuntimeError("httpcore changed: delivery deadlines cannot be enforced")
    pool._network_backend = _WatchedBackend(pool._network_backend)
    return transport


class HttpPoster:
    """POSTs bodies for one provider, with the retry policy above. Thread-safe."""

    def __init__(
        self,
        provider: str,
        policy: RetryPolicy,
        *,
        secrets: Iterable[str] = (),
        sleep: Sleep = time.sleep,
        wall_clock: WallClock = time.time,
        limiter: MinInterval | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.policy = policy
        self._secrets = tuple(s for s in secrets if s)
        for secret in self._secrets:
            register_secret(secret)
        self._sleep = sleep
        self._now = wall_clock
        self._limiter = limiter
        self._client = httpx.Client(
            timeout=policy.timeout,
            # no keep-alive: every request's sockets are opened, and so watched, by it
            limits=httpx.Limits(max_keepalive_connections=0),
            transport=transport if transport is not None else _watched_transport(),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )
        self._monotonic = time.monotonic

    def close(self) -> None:
        self._client.close()

    def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        action: Action,
        dedup_key: str,
    ) -> DeliveryResult:
        """Send `body` until it is accepted, refused for good, or the tries are used up."""
        policy = self.policy

        def result(status: DeliveryStatus, requests: int, **extra: object) -> DeliveryResult:
            return DeliveryResult.model_validate(
                {
                    "provider": self.provider,
                    "status": status,
                    "action": action,
                    "dedup_key": dedup_key,
                    "requests": requests,
                    **extra,
                }
            )

        reason, http_status, retry_after = "not sent", None, None
        end = self._monotonic() + policy.deadline
        attempt = 0
        for attempt in range(1, policy.max_tries + 1):
            if self._limiter is not None:
                self._limiter.acquire()
            remaining = end - self._monotonic()
            if remaining <= 0:
                attempt -= 1  # this request was never sent
                reason = f"deadline of {policy.deadline:g}s passed"
                break
            timeout = min(policy.timeout, remaining)
            try:
                with _Watch(remaining) as watch:
                    # post() reads the whole body: a trickled body is held to the watch too
                    response = self._client.post(
                        url, content=body, headers=dict(headers), timeout=timeout
                    )
            except httpx.TimeoutException as exc:
                reason, http_status, retry_after = f"timed out ({type(exc).__name__})", None, None
            except httpx.HTTPError as exc:
                reason, http_status, retry_after = (
                    f"network error ({type(exc).__name__})",
                    None,
                    None,
                )
            else:
                http_status = response.status_code
                if 200 <= http_status < 300:
                    return result(DeliveryStatus.OK, attempt, http_status=http_status)
                reason = f"HTTP {http_status}{self._snippet(response)}"
                if not _retryable_status(http_status):
                    log.warning(
                        "%s: %s %s refused for good: %s", self.provider, action, dedup_key, reason
                    )
                    return result(
                        DeliveryStatus.PERMANENT, attempt, http_status=http_status, reason=reason
                    )
                retry_after = parse_retry_after(response.headers.get("Retry-After"), self._now())
            wait = retry_after
            if wait is None:
                wait = compute_backoff(
                    attempt,
                    base_s=policy.base,
                    factor=policy.factor,
                    max_s=policy.cap,
                    jitter=policy.jitter,
                    seed=f"{self.provider}|{dedup_key}",
                )
            if watch.fired:
                reason = f"deadline of {policy.deadline:g}s passed ({reason})"
                break
            if attempt == policy.max_tries or wait > policy.cap:
                break
            if wait >= end - self._monotonic():
                reason = f"{reason}; the next try would pass the {policy.deadline:g}s deadline"
                break
            log.info(
                "%s: %s %s failed (%s), try %d of %d in %.2fs",
                self.provider,
                action,
                dedup_key,
                reason,
                attempt + 1,
                policy.max_tries,
                wait,
            )
            self._sleep(wait)
        log.warning("%s: %s %s not delivered: %s", self.provider, action, dedup_key, reason)
        return result(
            DeliveryStatus.RETRYABLE,
            attempt,
            http_status=http_status,
            reason=reason,
            retry_after_s=retry_after,
        )

    def _snippet(self, response: httpx.Response) -> str:
        try:
            text = " ".join(response.text.split())
        except (UnicodeDecodeError, LookupError):
            return ""
        if not text:
            return ""
        text = redact(text, self._secrets)
        return ": " + (text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "…")

"""The Redis client we build, how we name a server in messages, and redis-py errors translated.

Every redis-py exception is turned into our own here, once, with `raise ... from exc`:

* connection refused/reset, timeouts, AUTH failures, a server still LOADING its data, and a
  server refusing writes (OOM under noeviction, READONLY replica, MISCONF after a failed save)
  -> `RedisUnavailable`: "cannot do this now", the caller backs off and must not act meanwhile;
* anything else (WRONGTYPE, a script error) -> `StateError`: a bug or a foreign key in our space.

Messages name the server as `redis://host:port/db` from the client's own connection settings,
with a password shown as `***`: no code path can put the password into an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis import exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from supervisor.errors import ConfigError, RedisUnavailable, StateError

#: server replies that mean "not now", not "you are wrong"; redis-py strips the codes it maps to
#: a class (OOM, READONLY), the others keep their code as the first word
_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (rex.OutOfMemoryError, rex.ReadOnlyError)
_UNAVAILABLE_CODES = ("MISCONF", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")


def mask_url(url: str) -> str:
    """`url` with its password replaced by `***` (username, host, port and db kept)."""
    try:
        parts = urlsplit(url)
        password = parts.password
        if password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
        netloc = f"{user}:***@{host}{port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        # an unparsable URL (bad port...) may still hold a password: show none of it
        return "<unparsable Redis URL>"


def describe(client: redis.Redis) -> str:
    """How messages name the server `client` talks to, password masked."""
    pool = client.connection_pool
    kw: dict[str, Any] = pool.connection_kwargs
    user = kw.get("username") or ""
    cred = f"{user}:***@" if kw.get("password") else (f"{user}@" if user else "")
    db = kw.get("db", 0)
    if kw.get("path"):
        return f"unix://{cred}{kw['path']}?db={db}"
    scheme = "rediss" if issubclass(pool.connection_class, redis.SSLConnection) else "redis"
    return f"{scheme}://{cred}{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{db}"


def make_client(
    url: str,
    *,
    connect_timeout_s: float = 2.0,
    socket_timeout_s: float = 5.0,
    health_check_interval_s: int = 30,
    max_connections: int | None = None,
) -> redis.Redis:
    """A client with bounded waits and no automatic retries.

    redis-py 8 retries failed commands three times by default; a retried INCR, HINCRBY or lease
    script can run twice on the server when only the reply was lost, so retrying is the
    caller's decision, made from fresh state. Responses are decoded to str.
    """
    try:
        return redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=socket_timeout_s,
            health_check_interval=health_check_interval_s,
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
        )
    except ValueError as exc:
        # redis-py's message quotes nothing of the URL, but stay safe: ours names it masked
        raise ConfigError(f"cannot use Redis URL {mask_url(url)}: {exc}") from exc


@contextmanager
def translate_errors(where: str, doing: str) -> Iterator[None]:
    """Turn redis-py exceptions raised inside into RedisUnavailable or StateError."""
    try:
        yield
    except (rex.ConnectionError, rex.TimeoutError) as exc:
        # BusyLoadingError and AuthenticationError are ConnectionErrors too
        raise RedisUnavailable(f"cannot reach Redis at {where}: {doing}: {_text(exc)}") from exc
    except rex.ResponseError as exc:
        if isinstance(exc, _UNAVAILABLE_ERRORS) or str(exc).startswith(_UNAVAILABLE_CODES):
            raise RedisUnavailable(f"Redis at {where} refused to {doing}: {_text(exc)}") from exc
        raise StateError(f"Redis at {where} failed to {doing}: {_text(exc)}") from exc
    except rex.RedisError as exc:
        raise StateError(f"Redis at {where} failed to {doing}: {_text(exc)}") from exc


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__

"""`lane-supervisor metrics`: serve every worker process's series, behind basic auth.

Prefork workers cannot each serve /metrics; they write samples to `PROMETHEUS_MULTIPROC_DIR`
and this one small server reads them all (prometheus-client's multiprocess mode). Basic auth
because the series name gateways; credentials come from settings (the environment), never the
command line. The WSGI wrapper is ours: prometheus-client's server has no authentication.
"""

from __future__ import annotations

import base64
import hmac
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app, multiprocess
from prometheus_client.metrics_core import Metric

from supervisor.errors import ConfigError

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class TreeCollector:
    """Every process's samples under a directory tree (one subdirectory per host)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def collect(self) -> Iterable[Metric]:
        files = sorted(str(p) for p in self.root.rglob("*.db"))
        merged: Iterable[Metric] = multiprocess.MultiProcessCollector.merge(  # type: ignore[no-untyped-call]
            files, accumulate=True
        )
        return merged


def registry_for(metrics_dir: Path | None) -> CollectorRegistry | None:
    """The registry to serve: all processes' files when a directory is given."""
    if metrics_dir is None:
        return None  # the default registry of this process
    if not metrics_dir.is_dir():
        raise ConfigError(f"metrics directory {metrics_dir} is not a directory")
    registry = CollectorRegistry()
    registry.register(TreeCollector(metrics_dir))
    return registry


def with_basic_auth(app: WsgiApp, user: str, password: str) -> WsgiApp:
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def guarded(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        given = str(environ.get("HTTP_AUTHORIZATION", ""))
        if not hmac.compare_digest(given.encode(), expected.encode()):
            start_response(
                "401 Unauthorized",
                [
                    ("WWW-Authenticate", 'Basic realm="lane-supervisor"'),
                    ("Content-Type", "text/plain"),
                ],
            )
            return [b"authentication required\n"]
        return app(environ, start_response)

    return guarded


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def serve(
    address: str,
    port: int,
    user: str,
    password: str,
    *,
    metrics_dir: Path | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve /metrics until `stop` is set (or forever)."""
    raw = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    registry = registry_for(metrics_dir or (Path(raw) if raw else None))
    app = make_wsgi_app(registry) if registry is not None else make_wsgi_app()
    server: WSGIServer = make_server(
        address, port, with_basic_auth(app, user, password), handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="metrics")
    thread.start()
    try:
        (stop or threading.Event()).wait()
    finally:
        server.shutdown()
        server.server_close()

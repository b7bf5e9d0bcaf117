"""Building an engine from settings, the embedded Redis default, and the inline ladder of `heal`.

`heal` runs exactly what the worker runs (the same `Scanner` and `Steps`, the same leases,
counters and audit), only in one process: each step's follow-up is run after its delay instead
of being enqueued as a Celery task.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from supervisor.errors import ConfigError, StateError
from supervisor.escalation.pager import Delivery, ProviderPager
from supervisor.gateway.identity import identity_for
from supervisor.recovery.context import Engine, FleetSource
from supervisor.recovery.models import StepResult
from supervisor.recovery.scanner import Scanner
from supervisor.recovery.steps import Steps
from supervisor.redis_server import EmbeddedRedis
from supervisor.settings import Settings
from supervisor.state import StateStore

log = logging.getLogger(__name__)

#: where `up` records the URL of the embedded server it runs, for `heal`/`audit` to reuse
URL_FILE = "server.url"


def embedded_dir(settings: Settings) -> Path:
    return settings.state_dir / "redis"


@contextlib.contextmanager
def redis_url_for(settings: Settings) -> Iterator[str]:
    """The configured Redis URL; else the embedded server `up` runs; else one started here."""
    if settings.redis_url is not None:
        yield settings.redis_url.get_secret_value()
        return
    data_dir = embedded_dir(settings)
    recorded = data_dir / URL_FILE
    if recorded.is_file():
        url = recorded.read_text().strip()
        with StateStore.from_url(url, connect_timeout_s=0.5, socket_timeout_s=1) as probe:
            try:
                probe.ping()
                yield url
                return
            except StateError:
                pass  # a stale file from a server that is gone
    server = EmbeddedRedis(data_dir, auth=True)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


def build_engine(
    settings: Settings,
    redis_url: str,
    *,
    fleet_path: Path | None = None,
    dry_run: bool = False,
    submit: Callable[[Delivery], None] | None = None,
    source: FleetSource | None = None,
) -> Engine:
    """An engine on the fleet file and Redis given (settings fill in the rest).

    Escalations go to the fleet file's [paging] providers: `submit` hands each delivery to a
    Celery task in workers; without it (`heal`) deliveries run inline. `source`: a fleet
    source already loaded (a worker's, read before its children forked), so a child started
    while the file is broken still has the last good fleet.
    """
    path = fleet_path or settings.fleet
    if path is None:
        raise ConfigError("no fleet file: pass --fleet FILE or set SUPERVISOR_FLEET")
    if source is None or source.path != Path(path):
        source = FleetSource(Path(path))
    source.get()  # a broken fleet file is a configuration error now, not in a worker later
    store = StateStore.from_url(
        redis_url,
        prefix=settings.key_prefix,
        wait_replicas=settings.wait_replicas,
        wait_timeout_s=settings.wait_timeout_s,
    )
    engine = Engine(
        source.get,
        store,
        identity_for(settings),
        lease_ttl_s=settings.lease_ttl_s,
        lease_margin_s=settings.lease_margin_s,
        verify_delay_s=settings.verify_delay_s,
        dry_run=dry_run or settings.dry_run,
    )

    def labels(gateway: str) -> dict[str, str]:
        try:
            return dict(source.get().gateway(gateway).labels)
        except KeyError:
            return {}

    engine.pager = ProviderPager(
        lambda: source.get().paging,
        store,
        labels_for=labels,
        submit=submit or (lambda delivery: _deliver_inline(engine, delivery)),
    )
    source.on_broken = engine.fleet_broken
    source.on_repaired = engine.fleet_repaired
    return engine


def _deliver_inline(engine: Engine, delivery: Delivery) -> None:
    deliver_audited(engine, delivery)


def deliver_audited(engine: Engine, delivery: Delivery) -> dict[str, object]:
    """Send one delivery and write its outcome to the audit stream (tasks and `heal` alike)."""
    result = engine.pager.run(delivery)
    gateway, _, key = delivery.dedup_key.partition("/")
    if result is None:
        outcome, detail = "skipped", "nothing to send (resolved, superseded or already sent)"
    else:
        outcome = result.status.value
        detail = f"{result.action.value} via {result.provider}: " + (
            result.reason or f"HTTP {result.http_status}"
        )
    engine.audit(
        gateway=gateway,
        key=key or None,
        step="page",
        outcome=outcome,
        detail=f"{detail} (seq {delivery.seq})",
    )
    return {
        "dedup_key": delivery.dedup_key,
        "provider": delivery.provider,
        "outcome": outcome,
        "detail": detail,
    }


def run_ladder(engine: Engine, gateway: str, *, only_key: str | None = None) -> list[StepResult]:
    """Scan one gateway and run every attempt it starts to its end, inline."""
    scanner = Scanner(engine)
    steps = Steps(engine)
    out = scanner.scan(gateway, only_key=only_key)
    actions = list(out.actions)
    queue = deque(out.starts)
    while queue:
        nxt = queue.popleft()
        if nxt.delay_s > 0:
            time.sleep(nxt.delay_s)
        result = steps.run(nxt.step, nxt.ref)
        actions.append(result)
        if result.next is not None:
            queue.append(result.next)
    if out.report.error:
        actions.append(
            StepResult(
                gateway=gateway,
                key=None,
                step="scan",
                outcome="gateway_error",
                detail=out.report.error,
            )
        )
    return actions


def heal(
    engine: Engine,
    gateways: Sequence[str],
    *,
    concurrency: int = 8,
    on_done: Callable[[str], None] | None = None,
) -> list[StepResult]:
    """`run_ladder` over many gateways, a few at a time; actions in fleet order.

    `on_done(gateway)` is called as each gateway finishes (progress bars)."""

    def one(name: str) -> list[StepResult]:
        actions = run_ladder(engine, name)
        if on_done is not None:
            on_done(name)
        return actions

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(gateways) or 1))) as pool:
        results = list(pool.map(one, gateways))
    return [action for actions in results for action in actions]

"""The Celery app: `celery -A supervisor.app worker|beat`.

Broker, results, beat schedule and supervisor state all live in one Redis
(`SUPERVISOR_REDIS_URL`). Reliability choices, each answering a measured pitfall
(shared/stack-notes.md):

* acks_late + reject_on_worker_lost: a step whose worker dies is delivered again rather than
  lost; every step re-reads the session and checks its fenced lease before acting, so a second
  delivery cannot act twice, and attempt counters in Redis cap how often (celery #9082).
* prefetch 1: a worker holds no queue of steps it may never run.
* time limits (90 s soft, 120 s hard) far below the visibility timeout (15 min), so a running step
  is never redelivered to a second worker while the first still runs; no countdowns at all:
  backoff is a "not before" time in Redis that the next scan reads.
* visibility_timeout set on broker and result backend alike (celery #7651).
* beat's Redis client retries a lost connection for about half a minute, so a Redis restart
  does not end beat (redbeat's lock extend has no retry of its own); a worker that loses its
  broker connection while holding unacknowledged steps reconnects instead of exiting
  (`_survive_broker_loss`, a kombu bug the chaos suite found).
* three queues, `scan`, `act` and `page` (supervisor.queues): steps never wait behind scans,
  a slow paging provider holds neither; a worker started without -Q consumes all three.
* JSON only: no pickle from a shared broker.
* result_extended off: arguments are not copied into the result backend (they hold no secret
  anyway: tasks pass gateway names, never tokens).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import redis
from celery import Celery
from celery.signals import setup_logging
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from supervisor.logs import setup_logging as configure_logging
from supervisor.queues import DEFAULT_QUEUE, QUEUES, TASK_ROUTES
from supervisor.settings import get_settings

VISIBILITY_TIMEOUT_S = 900
#: how long beat's Redis client keeps retrying a lost connection (a Redis restart) before the
#: error reaches beat: about 20 tries, 0.1 s apart growing to 2 s, some 35 s in all
BEAT_REDIS_RETRY = Retry(ExponentialBackoff(cap=2.0, base=0.1), 20)
SOFT_TIME_LIMIT_S = 90
TIME_LIMIT_S = 120
#: where a task with no route goes (the queues and routes: supervisor.queues)
QUEUE = DEFAULT_QUEUE


def redis_url() -> str:
    """The configured Redis URL; Celery cannot start without one."""
    url = get_settings().redis_url
    if url is None:
        # `celery -A supervisor.app --help` must still work; tasks will fail clearly
        return os.environ.get("SUPERVISOR_REDIS_URL", "redis://127.0.0.1:6379/0")
    return url.get_secret_value()


def split_password(url: str) -> tuple[str, str | None]:
    """`url` without its password, and the password (None when it has none).

    Celery masks the password of `broker_url` and `result_backend` wherever it shows its
    configuration (`celery inspect conf`, Flower's worker pages), but not of other settings:
    redbeat's URL goes without it, the password in redbeat's options, whose `password` key
    Celery does mask.
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    netloc = f"{user}@{host}" if user else host
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)


def use_metrics_dir(metrics_dir: Path | None) -> None:
    """Point prometheus-client's multiprocess mode at this host's subdirectory.

    Must run before prometheus_client is imported (it reads the variable once); the app module
    is what `celery -A` imports first. One subdirectory per host, because process ids repeat
    across containers sharing the volume.
    """
    if metrics_dir is None:
        return
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        host_dir = metrics_dir / socket.gethostname()
        host_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(host_dir)
    # celery's CLI loads flower's plugin, which imports prometheus_client before this module
    # runs: choose the value class again; our series are built later (supervisor.metrics)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def make_app() -> Celery:
    settings = get_settings()
    use_metrics_dir(settings.metrics_dir)
    url = redis_url()
    beat_url, beat_password = split_password(url)
    beat_redis: dict[str, object] = {"retry": BEAT_REDIS_RETRY}
    if beat_password is not None:
        beat_redis["password"] = beat_password
    app = Celery("lane_supervisor", include=["supervisor.tasks"])
    transport = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
    app.conf.update(
        broker_url=url,
        result_backend=url,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=SOFT_TIME_LIMIT_S,
        task_time_limit=TIME_LIMIT_S,
        task_default_queue=QUEUE,
        # the mapping form: a worker without --queues consumes every one of them
        task_queues={name: {"exchange": name, "routing_key": name} for name in QUEUES},
        task_routes=TASK_ROUTES,
        task_track_started=True,
        task_send_sent_event=True,
        worker_send_task_events=True,
        result_extended=False,
        result_expires=24 * 3600,
        worker_hijack_root_logger=False,
        beat_scheduler="supervisor.schedule:FleetScheduler",
        beat_max_loop_interval=settings.beat_max_loop_interval_s,
        redbeat_redis_url=beat_url,
        redbeat_key_prefix=f"{settings.key_prefix}beat:",
        # a dead beat's successor takes over after this (redbeat's default is 25 min)
        redbeat_lock_timeout=settings.beat_lock_timeout_s,
        # redbeat does not retry its lock's extend: with redis-py's three quick retries a Redis
        # restart made beat exit, and every scan with it (the chaos suite found it); the
        # password rides here, where Celery masks it (Flower showed it in redbeat_redis_url)
        redbeat_redis_options=beat_redis,
        # re-notifications and redeliveries of pages: level-triggered, like the scans
        beat_schedule={
            "paging-tick": {
                "task": "supervisor.page_tick",
                "schedule": settings.paging_tick_s,
                "options": {"expires": settings.paging_tick_s},
            }
        },
        timezone="UTC",
    )
    return app


def _survive_broker_loss() -> None:
    """Keep a worker alive when Redis goes away while it holds unacknowledged messages.

    After a broker connection loss, kombu (5.x, Redis transport) detaches the old channels from
    their transport, yet closing such a channel (to put its unacknowledged messages back) or
    acknowledging a step that finished meanwhile still builds a connection pool from the
    transport: AttributeError ("'NoneType' object has no attribute 'hostname'"/"'client'"),
    which Celery treats as unrecoverable, so the worker exits and steps stop until something
    restarts it. The chaos suite found both by restarting Redis under load. Raising the
    connection error it really is lets Celery do what it does for those: log, reconnect, and
    leave the messages in Redis's unacked index, from which they come back after the
    visibility timeout (the periodic scan does not wait for them anyway).
    """
    from kombu.transport import redis as kombu_redis

    original: Any = kombu_redis.Channel._connparams
    if getattr(original, "survives_broker_loss", False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        transport = self.connection
        if transport is None or getattr(transport, "client", None) is None:
            raise redis.ConnectionError("this channel's broker connection is gone")
        return original(self, asynchronous=asynchronous)

    _connparams.survives_broker_loss = True  # type: ignore[attr-defined]
    setattr(kombu_redis.Channel, "_connparams", _connparams)  # noqa: B010


def _track_live_children_only() -> None:
    """Keep a prefork worker alive when it reconnects to Redis just as a child has died.

    On every broker reconnect the consumer registers the pool with its event loop again, which
    watches each pool process's exit sentinel. A child that exited moments before (killed at
    its hard time limit) is already untracked, its sentinel set to None, but not yet replaced:
    celery 5.x then calls `hub.add_reader(None)`, whose ValueError ("file descriptor is None")
    is an unrecoverable error, and the worker exits. The chaos suite (row 26) met it in about
    one in ten returns of a host frozen past its steps' time limits and cut off from Redis.
    Such a child needs no watching: the pool's maintenance replaces it.
    """
    from celery.concurrency import asynpool

    original: Any = asynpool.AsynPool._track_child_process
    if getattr(original, "tracks_live_children_only", False):
        return

    def _track_child_process(self: Any, proc: Any, hub: Any) -> Any:
        if getattr(proc, "_sentinel_poll", 0) is None:
            return None  # exited and untracked already
        return original(self, proc, hub)

    _track_child_process.tracks_live_children_only = True  # type: ignore[attr-defined]
    setattr(asynpool.AsynPool, "_track_child_process", _track_child_process)  # noqa: B010


_survive_broker_loss()
_track_live_children_only()
app = make_app()


@setup_logging.connect
def _setup_logging(**_: object) -> None:
    """Workers and beat log through our setup (JSON lines when SUPERVISOR_LOG_JSON is set)."""
    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)

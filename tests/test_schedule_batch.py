"""Beat's batched tick (supervisor.schedule): each due scan read once, sent once, rescheduled.

A real valkey and the real scheduler class, ticked in this process (no beat process): the
scans it sends land in the broker's `scan` queue, and valkey's own command counts show what
each tick read and wrote.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from redbeat.decoder import RedBeatJSONEncoder
from redbeat.schedulers import RedBeatScheduler, RedBeatSchedulerEntry

from supervisor.queues import QUEUES, SCAN_QUEUE, TASK_ROUTES
from supervisor.redis_server import EmbeddedRedis
from supervisor.schedule import ENTRY_PREFIX, FleetScheduler
from supervisor.settings import get_settings

pytestmark = pytest.mark.integration

GATEWAYS = 40
INTERVAL_S = 60.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "valkey") as valkey:
        yield valkey


def make_app(url: str) -> Celery:
    app = Celery("schedule-batch-test")
    app.conf.update(
        broker_url=url,
        task_queues={name: {"exchange": name, "routing_key": name} for name in QUEUES},
        task_routes=TASK_ROUTES,
        redbeat_redis_url=url,
        redbeat_key_prefix="t:beat:",
        beat_max_loop_interval=5,
        timezone="UTC",
    )
    return app


def scheduler(cls: type[RedBeatScheduler], app: Celery) -> Any:
    sched = cls(app=app, lazy=True)
    sched.lock_key = None  # one scheduler, no lock to extend
    return sched


def all_due(sched: Any, over_s: float = 0.0) -> None:
    """Every gateway gets an entry due within `over_s` from now, evenly spread (0: all due
    now): its last run one interval before that, its score in the schedule that due time."""
    sched.apply({f"{ENTRY_PREFIX}gw-{i:03d}": INTERVAL_S for i in range(GATEWAYS)})
    client = redis.Redis.from_url(sched.app.conf.redbeat_redis_url)
    now = datetime.now(UTC)
    with client.pipeline() as pipe:
        for i in range(GATEWAYS):
            key = RedBeatSchedulerEntry.generate_key(sched.app, f"{ENTRY_PREFIX}gw-{i:03d}")
            due = now + timedelta(seconds=over_s * i / GATEWAYS - 1)
            last = due - timedelta(seconds=INTERVAL_S)
            pipe.hset(key, "meta", json.dumps({"last_run_at": last}, cls=RedBeatJSONEncoder))
            pipe.zadd(sched.app.redbeat_conf.schedule_key, {key: due.timestamp()})
        pipe.execute()
    client.close()


def counts(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def run_beat(
    sched: Any, client: redis.Redis, tick: Any, seconds: float
) -> tuple[int, dict[str, int]]:
    """Tick as beat's loop does (sleeping what the tick returns) for `seconds`; the ticks made
    and the Redis calls, by command."""
    client.config_resetstat()
    deadline = time.monotonic() + seconds
    ticks = 0
    while (left := deadline - time.monotonic()) > 0:
        ticks += 1
        time.sleep(min(tick(), left))
    return ticks, counts(client)


def test_one_tick_sends_every_due_scan_once_reading_each_entry_once(
    server: EmbeddedRedis,
) -> None:
    app = make_app(server.url)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    sched = scheduler(FleetScheduler, app)
    all_due(sched)
    before = time.time()
    client.config_resetstat()
    sleep = sched.tick_batched()
    cost = counts(client)
    # every due scan sent, once, in this one tick
    messages = [json.loads(m) for m in client.lrange(SCAN_QUEUE, 0, -1)]
    sent = sorted(m["headers"]["argsrepr"] for m in messages)
    assert len(sent) == GATEWAYS == len(set(sent))
    # each entry read once (definition + meta), the next runs in one transaction
    assert cost.get("hget", 0) == 2 * GATEWAYS
    assert cost.get("multi", 0) <= 3  # ours, and kombu declaring the queue on first publish
    # and rescheduled one interval on
    scored: Any = client.zrange(app.redbeat_conf.schedule_key, 0, -1, withscores=True)
    scores = [float(score) for _, score in scored]
    assert len(scores) == GATEWAYS
    assert all(before + INTERVAL_S - 1 <= score <= time.time() + INTERVAL_S for score in scores)
    # nothing is due now: the next tick sends nothing and sleeps until the next entry, at most
    # beat_max_loop_interval
    assert get_settings().beat_batch_s <= sleep <= 5
    assert sched.tick_batched() >= get_settings().beat_batch_s
    assert client.llen(SCAN_QUEUE) == GATEWAYS
    client.close()


def test_scans_due_one_after_another_go_out_in_batches_not_a_tick_each(
    server: EmbeddedRedis,
) -> None:
    """40 scans due 50 ms apart (1,200 gateways' worth of a minute): redbeat's own tick wakes
    for each, extends its lock, reads the due entry and the next one, each in a transaction of
    its own, and writes its next run in a third; here beat wakes every beat_batch_s and reads
    each entry once."""
    client = redis.Redis.from_url(server.url, decode_responses=True)
    spread, window = 2.0, 4.0
    ours = scheduler(FleetScheduler, make_app(server.url))
    all_due(ours, spread)
    ticks, cost = run_beat(ours, client, ours.tick_batched, window)
    sent = [json.loads(m)["headers"]["argsrepr"] for m in client.lrange(SCAN_QUEUE, 0, -1)]
    client.close()
    print(f"{ticks} ticks, {cost}")
    assert len(sent) == len(set(sent)) == GATEWAYS  # every scan sent, once
    assert ticks <= window / get_settings().beat_batch_s + 2  # not one tick a scan
    assert cost.get("hget", 0) == 2 * GATEWAYS  # each entry read once (definition + meta)
    assert cost.get("multi", 0) <= ticks + 2  # one write transaction a tick that sends

"""Beat: one periodic scan per gateway, kept in Redis by redbeat and synced from the fleet file.

redbeat holds a Redis lock so only one of several beats ticks (run as many as you like). The lock
holder re-reads the fleet file every `fleet_reload_s` and adds, changes or removes scan entries,
so a gateway added to or dropped from the file takes effect within one interval, no restart.
First runs are spread over the interval by a hash of the gateway name, so 1,000 gateways do not
fire in the same second.

Ticks are batched (`FleetScheduler.tick`): redbeat's own tick, run once per due scan (~17 a
second at 1,000 gateways), extends its lock, loads the next entry due as well as the due ones
(each entry read twice) and writes each entry's next run in a transaction of its own, so beat
spent 4.5-6.7 ms of CPU per scan it sent (BENCHMARKS.md; 2.4-3 ms batched). A tick here sleeps
at least `beat_batch_s`, sends everything due by then after one read of each due entry and one
write of all their next runs, reads the next due time from the schedule's score alone, and
extends the lock at most once a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.beat import ScheduleEntry
from celery.schedules import schedule
from redbeat.decoder import RedBeatJSONEncoder, to_timestamp
from redbeat.schedulers import RedBeatScheduler, RedBeatSchedulerEntry, get_redis

from supervisor.errors import ConfigError, StateError
from supervisor.fleet import Fleet, load_fleet
from supervisor.queues import PERIODIC_TASKS
from supervisor.settings import get_settings
from supervisor.state import AuditRecord, StateStore

log = logging.getLogger(__name__)

SCAN_TASK = "supervisor.scan_gateway"
ENTRY_PREFIX = "scan:"
#: the lock is extended at most this often (redbeat extends it on every tick); it lasts
#: `beat_lock_timeout_s`, far longer
LOCK_EXTEND_EVERY_S = 1.0


def spread_offset_s(name: str, interval_s: float) -> float:
    """A stable offset within the interval for one gateway (spreads first runs)."""
    digest = hashlib.sha256(name.encode()).digest()
    return (int.from_bytes(digest[:8], "big") / 2**64) * interval_s


def desired_entries(fleet: Fleet) -> dict[str, float]:
    """Entry name -> scan interval in seconds, one per gateway."""
    return {ENTRY_PREFIX + g.name: max(g.policy.scan_interval, 1.0) for g in fleet.gateways}


class FleetScheduler(RedBeatScheduler):  # type: ignore[misc]
    """redbeat, plus the fleet file as the source of scan entries."""

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        self._last_sync = 0.0
        self._fleet_mtime: float | None = None
        self._broken_mtime: float | None = None
        self._extended_at: float | None = None

    def _members_key(self) -> str:
        return f"{get_settings().key_prefix}beat:fleet-entries"

    def sync_fleet(self, *, force: bool = False) -> bool:
        """Bring the scan entries in line with the fleet file; False if it could not be read."""
        settings = get_settings()
        path = settings.fleet
        if path is None:
            log.error("beat: no fleet file (set SUPERVISOR_FLEET); no scans scheduled")
            return False
        problem: str | None = None
        mtime: float | None = None
        try:
            mtime = path.stat().st_mtime
            if not force and mtime == self._fleet_mtime:
                return True
            if not force and mtime == self._broken_mtime:
                return False  # logged once already
            fleet = load_fleet(path)
        except OSError as exc:
            problem = f"{path}: cannot read the fleet file: {exc.strerror}"
        except ConfigError as exc:
            problem = str(exc)  # never holds a secret's bytes (see supervisor.secretfile)
        except Exception as exc:  # load_fleet converts; this is the backstop
            problem = f"{path}: cannot be loaded ({type(exc).__name__})"
        if problem is not None:
            # keep the entries we have: a typo in the file must not stop supervision; the
            # workers, which read the same file, audit it too and page it (once, by a flag)
            self._broken_mtime = mtime
            log.error("beat: fleet file not reloaded, keeping the current schedule: %s", problem)
            self._audit_broken(problem)
            return False
        self._broken_mtime = None
        self._fleet_mtime = mtime
        self.apply(desired_entries(fleet))
        return True

    def _audit_broken(self, problem: str) -> None:
        """One audit record per broken version, so it is on record even with no worker up."""
        url = get_settings().redis_url
        if url is None:
            return
        try:
            with StateStore.from_url(
                url.get_secret_value(), prefix=get_settings().key_prefix
            ) as store:
                store.audit.append(
                    AuditRecord(
                        ts_ms=int(time.time() * 1000),
                        gateway="supervisor",
                        step="escalate",
                        outcome="fleet_broken",
                        detail=f"beat keeps the current schedule: {problem}",
                    )
                )
        except StateError as exc:
            log.error("beat: audit record of the broken fleet file lost: %s", exc)

    def apply(self, desired: dict[str, float]) -> None:
        client = get_redis(self.app)
        members_key = self._members_key()
        current = set(client.smembers(members_key))
        for name in sorted(current - set(desired)):
            RedBeatSchedulerEntry(name, app=self.app).delete()
            client.srem(members_key, name)
            log.info("beat: removed scan entry %s", name)
        now = datetime.now(UTC)
        for name, interval in desired.items():
            key = RedBeatSchedulerEntry.generate_key(self.app, name)
            try:
                existing = RedBeatSchedulerEntry.from_key(key, app=self.app)
                if existing.schedule.run_every.total_seconds() == interval:
                    continue
            except KeyError:
                pass
            # pretend the last run was `offset` ago so the first run lands spread over the interval
            offset = interval - spread_offset_s(name, interval)
            entry = RedBeatSchedulerEntry(
                name,
                SCAN_TASK,
                schedule(run_every=timedelta(seconds=interval)),
                args=[name.removeprefix(ENTRY_PREFIX)],
                options={"expires": interval},
                app=self.app,
            )
            entry.last_run_at = now - timedelta(seconds=offset)
            entry.save()
            client.sadd(members_key, name)
            log.info("beat: scan entry %s every %ss", name, interval)

    def apply_async(self, entry: Any, *args: Any, **kwargs: Any) -> Any:
        """Send a due entry; a periodic task goes without its `task-sent` event unless
        SUPERVISOR_PERIODIC_EVENTS is on.

        Celery decides on that event from the app's `task_send_sent_event` alone, with no
        per-task or per-call switch (celery/app/base.py, send_task), so it is turned off for
        this one send. Beat sends from one thread, and every other sender (a worker enqueuing
        a step, a delivery) is another process, whose task-sent events stay on.
        """
        conf = self.app.conf
        if entry.task not in PERIODIC_TASKS or get_settings().periodic_events:
            return super().apply_async(entry, *args, **kwargs)
        saved = conf.task_send_sent_event
        conf.task_send_sent_event = False
        try:
            return super().apply_async(entry, *args, **kwargs)
        finally:
            conf.task_send_sent_event = saved

    def tick(self, *args: Any, **kwargs: Any) -> float:
        # only the lock holder ticks, so only one beat writes entries
        if time.monotonic() - self._last_sync >= get_settings().fleet_reload_s:
            self._last_sync = time.monotonic()
            self.sync_fleet()
        result = self.tick_batched()
        return min(result, get_settings().fleet_reload_s)

    def _extend_lock(self) -> None:
        if not self.lock_key:
            return
        now = time.monotonic()
        if self._extended_at is None or now - self._extended_at >= LOCK_EXTEND_EVERY_S:
            self.lock.extend(int(self.lock_timeout))  # raises if another beat took it
            self._extended_at = now

    def tick_batched(self) -> float:
        """Send every entry due now, reading each once; the seconds to sleep before the next
        tick: until the next entry is due, at least `beat_batch_s`, at most max_interval."""
        self._extend_lock()
        conf = self.app.redbeat_conf
        client = get_redis(self.app)
        now_ts = to_timestamp(self.app.now())
        with client.pipeline(transaction=False) as pipe:
            pipe.zrangebyscore(conf.schedule_key, 0, now_ts)
            pipe.zrangebyscore(
                conf.schedule_key, f"({now_ts}", now_ts + self.max_interval, start=0, num=1,
                withscores=True,
            )  # fmt: skip
            due_keys, upcoming = pipe.execute()
        entries = self._load(client, due_keys)
        sleep = self.max_interval
        if upcoming:
            sleep = min(sleep, float(upcoming[0][1]) - now_ts)
        due: list[RedBeatSchedulerEntry] = []
        for entry in entries:
            is_due, next_in = entry.is_due()
            if is_due:
                due.append(entry)
            if next_in:
                sleep = min(sleep, next_in)
        if due:
            # the next runs are written before anything is sent, as redbeat does (a beat that
            # dies in between skips one scan; none is sent twice), in one transaction
            with client.pipeline() as pipe:
                for entry in due:
                    _advance(entry, pipe)
                pipe.execute()
            for entry in due:
                log.info("Scheduler: Sending due task %s (%s)", entry.name, entry.task)
                try:
                    self.apply_async(entry, advance=False, **self._maybe_due_kwargs)
                except Exception as exc:
                    log.exception("Scheduler: Message Error: %s", exc)
        return max(float(sleep), get_settings().beat_batch_s)

    def _load(self, client: Any, keys: list[str]) -> list[RedBeatSchedulerEntry]:
        """The entries under `keys`, read in one round trip (redbeat: one transaction each)."""
        if not keys:
            return []
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, "definition")
                pipe.hget(key, "meta")
            values = pipe.execute()
        out = []
        for i, key in enumerate(keys):
            definition, meta = values[2 * i], values[2 * i + 1]
            if not definition:
                log.warning("beat: Failed to load %s, removing", key)
                client.zrem(self.app.redbeat_conf.schedule_key, key)
                continue
            fields = RedBeatSchedulerEntry.decode_definition(definition)
            decoded = RedBeatSchedulerEntry.decode_meta(meta)
            fields.update(decoded)
            entry = RedBeatSchedulerEntry(app=self.app, **fields)
            entry.last_run_at = decoded["last_run_at"]  # as redbeat's from_key
            out.append(entry)
        return out


def _advance(entry: RedBeatSchedulerEntry, pipe: Any) -> None:
    """Queue on `pipe` what redbeat's `next(entry)` writes: the run just made and the next due
    time (its own pipeline per entry, otherwise the same)."""
    following = ScheduleEntry._next_instance(entry)
    meta = {"last_run_at": following.last_run_at, "total_run_count": following.total_run_count}
    pipe.hset(entry.key, "meta", json.dumps(meta, cls=RedBeatJSONEncoder))
    pipe.zadd(entry.app.redbeat_conf.schedule_key, {following.key: following.score})

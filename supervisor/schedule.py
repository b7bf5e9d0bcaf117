"""Beat: one periodic scan per gateway, kept in Redis by redbeat and synced from the fleet file.

redbeat holds a Redis lock so only one of several beats ticks (run as many as you like). The lock
holder re-reads the fleet file every `fleet_reload_s` and adds, changes or removes scan entries,
so a gateway added to or dropped from the file takes effect within one interval, no restart.
First runs are spread over the interval by a hash of the gateway name, so 1,000 gateways do not
fire in the same second.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.schedules import schedule
from redbeat.schedulers import RedBeatScheduler, RedBeatSchedulerEntry, get_redis

from supervisor.errors import ConfigError, StateError
from supervisor.fleet import Fleet, load_fleet
from supervisor.queues import PERIODIC_TASKS
from supervisor.settings import get_settings
from supervisor.state import AuditRecord, StateStore

log = logging.getLogger(__name__)

SCAN_TASK = "supervisor.scan_gateway"
ENTRY_PREFIX = "scan:"


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
        result: float = super().tick(*args, **kwargs)
        return min(result, get_settings().fleet_reload_s)

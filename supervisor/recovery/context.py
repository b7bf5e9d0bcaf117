"""What every recovery step needs at hand: the fleet, the state store, the device identity, a clock.

One `Engine` per process (a Celery worker child, or the `heal` command). The fleet file is
re-read when it changes on disk, so a worker picks up new gateways and thresholds without a
restart; tokens stay inside the process (steps are handed gateway names only).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from supervisor.errors import ConfigError, RedisNotDurable, StateError
from supervisor.fleet import Fleet, GatewaySpec, load_fleet
from supervisor.gateway.identity import DeviceIdentity
from supervisor.recovery.pager import AuditOnlyPager, Pager
from supervisor.state import AuditRecord, StateStore

log = logging.getLogger(__name__)

#: how long a durability verdict on the Redis server is trusted before asking again
DURABILITY_RECHECK_S = 60.0
#: the one fleet-wide incident "Redis is not safe to act on" (not tied to any gateway)
REDIS_DEDUP_KEY = "supervisor/redis"
REDIS_FLAG = "redis_not_durable"
#: the one fleet-wide incident "the fleet file is broken; the last good version is in use"
FLEET_DEDUP_KEY = "supervisor/fleet"
FLEET_FLAG = "fleet_file_broken"


def session_dedup_key(gateway: str, key: str) -> str:
    return f"{gateway}/{key}"


class FleetSource:
    """The fleet file, re-read when its modification time changes.

    A reload that fails in any way keeps the last good fleet: a typo, a hostile secret file or
    a bug in loading must not stop supervision. Each broken version is logged once (the
    `FleetFileError` message, which never holds secret bytes) and handed to `on_broken` (the
    engine audits and pages it); `on_repaired` runs when a good version follows a broken one.
    """

    def __init__(
        self,
        path: Path,
        *,
        on_broken: Callable[[str], None] | None = None,
        on_repaired: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fleet: Fleet | None = None
        self._mtime: float | None = None
        self._broken_mtime: float | None = None
        self.on_broken = on_broken
        self.on_repaired = on_repaired

    def get(self) -> Fleet:
        notify: Callable[[], object] | None = None
        with self._lock:
            fleet, notify = self._reload()
        # outside the lock: the hooks page, and the pager reads the fleet (labels, routes)
        if notify is not None:
            _quietly(notify)
        return fleet

    def _reload(self) -> tuple[Fleet, Callable[[], object] | None]:
        try:
            mtime = self.path.stat().st_mtime
        except OSError as exc:
            if self._fleet is not None:
                return self._fleet, None  # keep supervising with what we know
            raise ConfigError(f"{self.path}: cannot read the fleet file: {exc.strerror}") from None
        if self._fleet is not None and mtime in (self._mtime, self._broken_mtime):
            return self._fleet, None
        problem: str | None = None
        try:
            fleet = load_fleet(self.path)
        except ConfigError as exc:
            if self._fleet is None:
                raise
            problem = str(exc)
        except Exception as exc:  # load_fleet converts; this is the backstop
            problem = f"{self.path}: cannot be loaded ({type(exc).__name__})"
            if self._fleet is None:
                raise ConfigError(problem) from None
        if problem is None:
            repaired = self._broken_mtime is not None
            self._fleet, self._mtime, self._broken_mtime = fleet, mtime, None
            return fleet, (self.on_repaired if repaired else None)
        self._broken_mtime = mtime
        log.error("fleet file not reloaded, keeping the previous version: %s", problem)
        hook = self.on_broken
        assert self._fleet is not None
        return self._fleet, ((lambda: hook(problem)) if hook is not None else None)


def _quietly(action: Callable[[], object]) -> None:
    """Run a notification hook; its failure (Redis down) must not fail the scan that reloaded."""
    try:
        action()
    except Exception as exc:
        log.error("fleet file notification failed: %s", type(exc).__name__)


class Engine:
    """The shared context of scans and steps."""

    def __init__(
        self,
        fleet: Callable[[], Fleet],
        store: StateStore,
        identity: DeviceIdentity | None,
        *,
        lease_ttl_s: float = 300.0,
        lease_margin_s: float = 2.0,
        verify_delay_s: float = 1.0,
        dry_run: bool = False,
        pager: Pager | None = None,
        clock: Callable[[], float] = time.time,
        owner_prefix: str = "",
    ) -> None:
        self._fleet = fleet
        self.store = store
        self.identity = identity
        self.lease_ttl_ms = int(lease_ttl_s * 1000)
        #: a step stops sending this long before its lease's TTL runs out (at most a tenth
        #: of the TTL, so short test leases still leave room to act)
        self.lease_margin_s = min(lease_margin_s, lease_ttl_s / 10)
        self.verify_delay_s = verify_delay_s
        self.global_dry_run = dry_run
        #: the one paging handle: escalations, resolves, silences, deliveries
        self.pager: Pager = pager or AuditOnlyPager()
        self.clock = clock
        self.owner_prefix = owner_prefix
        #: how long a redelivered step waits for another delivery's answer (None: call
        #: timeout + 5 s, the longest a live delivery can still be sending)
        self.claim_wait_s: float | None = None
        self._durable_checked = 0.0
        self._durable_problems: list[str] = []

    @property
    def fleet(self) -> Fleet:
        return self._fleet()

    def spec(self, gateway: str) -> GatewaySpec:
        """The gateway's spec from the current fleet file, or ConfigError."""
        try:
            return self.fleet.gateway(gateway)
        except KeyError:
            raise ConfigError(f"gateway {gateway!r} is not in the fleet file") from None

    def now_ms(self) -> float:
        return self.clock() * 1000

    def dry_run_for(self, spec: GatewaySpec) -> bool:
        return self.global_dry_run or spec.policy.dry_run

    def durability_problems(self) -> list[str]:
        """Why the Redis server is unsafe to act on (cached for a minute); empty when safe.

        A fresh verdict of "safe" resolves the fleet-wide escalation, if one is open."""
        now = time.monotonic()
        if now - self._durable_checked > DURABILITY_RECHECK_S or self._durable_checked == 0.0:
            self._durable_problems = self.store.check_durability()
            self._durable_checked = now
            if not self._durable_problems and self.store.episodes.lower_flag(REDIS_FLAG):
                self.audit(
                    gateway="supervisor", step="resolve", outcome="redis_durable",
                    detail="Redis keeps what we write again; acting resumes",
                )  # fmt: skip
                self.pager.resolve(REDIS_DEDUP_KEY, gateway="supervisor", key=None)
        return self._durable_problems

    def escalate_not_durable(self, problems: list[str]) -> bool:
        """Escalate, once for the whole fleet, that Redis is not safe to act on.

        Every scan that needs to act audits its refusal; only the first (SET NX on a flag, in
        that same Redis: a restart that forgets it escalates again) pages. True if this did."""
        if not self.store.episodes.raise_flag(REDIS_FLAG):
            return False
        detail = "Redis is not safe to act on: " + "; ".join(problems)
        self.audit(
            gateway="supervisor", step="escalate", outcome="redis_not_durable", detail=detail
        )
        self.pager.trigger(
            REDIS_DEDUP_KEY,
            gateway="supervisor",
            key=None,
            kind="breaker_open",
            details={"redis": self.store.url, "problems": "; ".join(problems)},
        )
        return True

    def fleet_broken(self, problem: str) -> None:
        """A fleet reload failed: audit it (every process), page once for the fleet (a flag)."""
        self.audit(gateway="supervisor", step="escalate", outcome="fleet_broken", detail=problem)
        if self.store.episodes.raise_flag(FLEET_FLAG):
            self.pager.trigger(
                FLEET_DEDUP_KEY,
                gateway="supervisor",
                key=None,
                kind="escalated",
                details={"problem": problem, "acting_on": "the last good fleet file"},
            )

    def fleet_repaired(self) -> None:
        if self.store.episodes.lower_flag(FLEET_FLAG):
            self.audit(
                gateway="supervisor", step="resolve", outcome="fleet_repaired",
                detail="the fleet file loads again",
            )  # fmt: skip
            self.pager.resolve(FLEET_DEDUP_KEY, gateway="supervisor", key=None)

    def require_durable(self) -> None:
        problems = self.durability_problems()
        if problems:
            raise RedisNotDurable(self.store.url, problems)

    def audit(self, **fields: object) -> None:
        """Write one audit record; a failure is logged, never raised into the step.

        Mutating steps write their intent with `audit_strict` instead: an action whose record
        cannot be written is not taken.
        """
        try:
            self.audit_strict(**fields)
        except StateError as exc:
            log.error("audit record lost (%s): %s", exc, fields)

    def audit_strict(self, **fields: object) -> None:
        self.store.audit.append(AuditRecord.model_validate({"ts_ms": int(self.now_ms()), **fields}))

"""One periodic scan of one gateway: classify, close healed episodes, decide, start attempts.

Level-triggered, as Kubernetes controllers are: every scan decides again from the gateway's
state now and the counters in Redis, so a lost task, a dead worker or a restarted Redis costs at
most one interval. What it costs in Redis: two reads and one write per scan (gateway state, open
episodes) and nothing per healthy session; a session that needs action adds its counter reads
and, when an attempt starts, a lease, a counter increment and an open-episode entry.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field

from supervisor import metrics
from supervisor.core.attempt import AttemptRef
from supervisor.core.backoff import backoff_seed
from supervisor.core.detect import Verdict
from supervisor.core.ladder import Episode, Found, Kind, Step, next_action, next_not_before
from supervisor.core.rules import (
    boot_grace_left,
    closes_episode,
    is_new_boot,
    unreachable_opens,
    zombie_breaker_open,
)
from supervisor.fleet import GatewaySpec
from supervisor.recovery.closing import close_episode
from supervisor.recovery.context import Engine
from supervisor.recovery.models import NextStep, StepResult
from supervisor.scan import GatewayReport, GatewayScan, look
from supervisor.state.episodes import GatewayState, OpenEpisode

log = logging.getLogger(__name__)


@dataclass
class ScanOutcome:
    """What one scan saw and decided."""

    report: GatewayReport
    #: first steps of the attempts (and escalations) this scan started
    starts: list[NextStep] = field(default_factory=list)
    #: what the scan itself decided or did (healed closures, breakers, lease conflicts...)
    actions: list[StepResult] = field(default_factory=list)


class Scanner:
    """Scans gateways with an engine's state; `Steps` runs what it starts."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._only_key: str | None = None
        self._started = 0

    def _act(
        self, out: ScanOutcome, gateway: str, key: str | None, step: str, outcome: str, detail: str
    ) -> None:
        out.actions.append(
            StepResult(gateway=gateway, key=key, step=step, outcome=outcome, detail=detail)
        )
        self.engine.audit(gateway=gateway, key=key, step=step, outcome=outcome, detail=detail)
        log.info(
            "%s %s: %s (%s)", gateway, step, outcome, detail,
            extra={"gateway": gateway, "key": key, "step": step, "outcome": outcome},
        )  # fmt: skip

    def scan(self, gateway: str, *, only_key: str | None = None) -> ScanOutcome:
        """Scan one gateway; `only_key` (the `recover` command) acts on that session alone,
        without waiting out its backoff."""
        self._only_key = only_key
        self._started = 0
        spec = self.engine.spec(gateway)
        report, scan = asyncio.run(look(spec, self.engine.identity))
        metrics.scanned(report, interval_s=spec.policy.scan_interval)
        out = ScanOutcome(report=report)
        state = self.engine.store.episodes.gateway_state(gateway)
        if scan is None:
            self._gateway_failed(spec, report, state, out)
            return out
        self._gateway_seen(spec, scan, state, out)
        return out

    # -- gateway health ------------------------------------------------------------------------

    def _gateway_failed(
        self, spec: GatewaySpec, report: GatewayReport, state: GatewayState, out: ScanOutcome
    ) -> None:
        engine = self.engine
        failures = state.failures + 1
        engine.store.episodes.update_gateway(
            spec.name,
            failures=failures,
            last_error=report.error,
            last_error_kind=report.error_kind,
            last_scan_ms=int(engine.now_ms()),
        )
        if unreachable_opens(failures, already_open=state.unreachable_open, policy=spec.policy):
            engine.store.episodes.update_gateway(spec.name, unreachable_open=True)
            metrics.escalated("gateway_unreachable")
            metrics.breaker(spec.name, "unreachable", is_open=True)
            self._act(
                out, spec.name, None, "escalate", "gateway_unreachable",
                f"{failures} failed scan(s): {report.error}",
            )  # fmt: skip
            engine.pager.trigger(
                spec.name,
                gateway=spec.name,
                key=None,
                kind=report.error_kind or "unreachable",
                details={"gateway": spec.name, "error": report.error, "failures": failures},
            )

    def _gateway_seen(
        self, spec: GatewaySpec, scan: GatewayScan, state: GatewayState, out: ScanOutcome
    ) -> None:
        engine = self.engine
        name = spec.name
        marker = scan.hello.boot_marker
        new_boot = is_new_boot(state.boot_marker, marker)
        counts = Counter(v.kind.value for v in scan.verdicts)
        updates: dict[str, object] = {
            "protocol": scan.hello.protocol,
            "last_scan_ms": int(engine.now_ms()),
            "counts": dict(counts),
            "messages_waiting": scan.messages_waiting,
            "lane_queued": None if scan.lanes is None else scan.lanes.session_queued,
            "failures": 0,
            "last_error": None,
            "last_error_kind": None,
        }
        if marker != state.boot_marker:
            updates.update(boot_marker=marker, boot_seen_ms=int(engine.now_ms()))
        if state.unreachable_open:
            updates["unreachable_open"] = False
        engine.store.episodes.update_gateway(name, **updates)
        if state.unreachable_open:
            metrics.resolved("gateway_unreachable")
            metrics.breaker(name, "unreachable", is_open=False)
            self._act(out, name, None, "resolve", "gateway_reachable", "scans succeed again")
            engine.pager.resolve(name, gateway=name, key=None)
        if new_boot:
            self._act(
                out, name, None, "scan", "boot_sweep",
                f"the gateway restarted (boot {state.boot_marker} -> {marker}): sweeping at once",
            )  # fmt: skip
        self._close_healed(spec, scan, out)
        if self._breaker(spec, scan, state, out):
            return
        since_boot_s = boot_grace_left(scan.view.now_ms, scan.hello.boot_time_ms, spec.policy)
        if since_boot_s is not None:
            if any(v.needs_action for v in scan.verdicts):
                self._act(
                    out, name, None, "scan", "boot_grace",
                    f"booted {since_boot_s:.0f}s ago: leaving recovery to the gateway for "
                    f"{spec.policy.boot_grace:g}s",
                )  # fmt: skip
            return
        dry_run = engine.dry_run_for(spec)
        needing = [
            v
            for v in scan.verdicts
            if v.needs_action and (self._only_key is None or v.key == self._only_key)
        ]
        # checked once a minute per process even when nothing needs action, so that a fixed
        # server resolves the fleet-wide escalation without waiting for a zombie
        problems = [] if dry_run else engine.durability_problems()
        if needing and problems:
            self._act(
                out, name, None, "scan", "refused",
                "Redis is not safe to act on: " + "; ".join(problems),
            )  # fmt: skip
            if engine.escalate_not_durable(problems):
                metrics.escalated("redis_not_durable")
            return
        for verdict in needing:
            self._decide(spec, verdict, new_boot=new_boot, dry_run=dry_run, out=out)

    def _close_healed(self, spec: GatewaySpec, scan: GatewayScan, out: ScanOutcome) -> None:
        name = spec.name
        open_episodes = self.engine.store.episodes.open_episodes(name)
        if not open_episodes:
            return
        by_key = {v.key: v for v in scan.verdicts}
        absent = [key for key in open_episodes if key not in by_key]
        # one listing can skip a row (a deletion between two pages shifts the rest): a key
        # missing from it counts as gone only if a second, independent listing agrees
        confirmed = self._confirm_absent(spec, absent) if absent else set()
        for key, episode in open_episodes.items():
            now = by_key.get(key)
            held = now is not None and self.engine.store.leases.holder(name, key) is not None
            why = closes_episode(
                episode.session_id, now, lease_held=held, absence_confirmed=key in confirmed,
                flapping=episode.escalated and self.engine.store.budgets.is_flapping(name, key),
            )  # fmt: skip
            if why is None:
                continue
            escalated = close_episode(self.engine, name, key, episode.session_id)
            self._act(
                out, name, key, "scan", "healed",
                why + (" (escalation resolved)" if escalated else ""),
            )  # fmt: skip

    def _confirm_absent(self, spec: GatewaySpec, keys: list[str]) -> set[str]:
        """Those of `keys` that a second listing does not hold either (none if it fails)."""
        _report, again = asyncio.run(look(spec, self.engine.identity, lanes=False))
        if again is None:
            return set()
        listed = {v.key for v in again.verdicts}
        return {key for key in keys if key not in listed}

    def _breaker(
        self, spec: GatewaySpec, scan: GatewayScan, state: GatewayState, out: ScanOutcome
    ) -> bool:
        """The zombie breaker: too many zombies at once smells like our bug, not theirs."""
        policy = spec.policy
        is_open, zombies, total = zombie_breaker_open(scan.verdicts, policy)
        engine = self.engine
        name = spec.name
        metrics.breaker(name, "zombies", is_open=is_open)
        if is_open and not state.breaker_open:
            engine.store.episodes.update_gateway(name, breaker_open=True)
            detail = (
                f"{zombies} of {total} sessions look like zombies (over "
                f"{policy.zombie_breaker_share:.0%}): suspecting a bug, acting on none"
            )
            self._act(out, name, None, "escalate", "breaker_open", detail)
            metrics.escalated("breaker_open")
            engine.pager.trigger(
                name,
                gateway=name,
                key=None,
                kind="breaker_open",
                details={
                    "gateway": name,
                    "zombies": zombies,
                    "sessions": total,
                    "messages_waiting": scan.messages_waiting,
                },
            )
        elif not is_open and state.breaker_open:
            engine.store.episodes.update_gateway(name, breaker_open=False)
            self._act(out, name, None, "resolve", "breaker_closed", f"{zombies} zombie(s) now")
            metrics.resolved("breaker_open")
            engine.pager.resolve(name, gateway=name, key=None)
        elif is_open:
            self._act(out, name, None, "scan", "breaker_open", f"{zombies} of {total} zombies")
        return is_open

    # -- one session ---------------------------------------------------------------------------

    def _decide(
        self,
        spec: GatewaySpec,
        verdict: Verdict,
        *,
        new_boot: bool,
        dry_run: bool,
        out: ScanOutcome,
    ) -> None:
        engine = self.engine
        store = engine.store
        policy = spec.policy
        name, key = spec.name, verdict.key
        sid = verdict.session_id or ""
        now_ms = engine.now_ms()
        state = store.attempts.get(name, key, sid)
        heals, gateway_heals = store.budgets.counts(
            name, key, now_ms=now_ms, window_s=policy.heal_budget_window
        )
        episode = Episode(
            attempts=state.count if state else 0,
            next_not_before_ms=state.next_not_before_ms if state else 0.0,
            escalated=store.attempts.is_escalated(name, key, sid),
            flapping=store.budgets.is_flapping(name, key),
            heals_in_window=len(heals),
            # attempts this scan started will reset too: they spend the budget already
            gateway_heals_in_hour=gateway_heals + self._started,
        )
        found = Found(verdict, episode, new_boot=new_boot, forced=self._only_key is not None)
        action = next_action(None, found, policy, now_ms)
        if action.kind is Kind.HANDS_OFF and action.page == "gateway_flapping":
            self._gateway_over_budget(spec, action.reason, dry_run, out)
            return
        if action.kind not in (Kind.ESCALATE, Kind.START):
            return
        silence = engine.pager.silenced(name, key)
        if silence is not None and silence.also_actions:
            self._act(
                out, name, key, "scan", "silenced",
                f"actions silenced on {silence.target} ({silence.reason}); not acting",
            )  # fmt: skip
            return
        recovery_id = uuid.uuid4().hex[:16]
        if action.kind is Kind.ESCALATE:
            ref = AttemptRef.of(
                name, verdict, recovery_id=recovery_id, attempt=episode.attempts,
                lease_token=0, dry_run=dry_run, escalation=action.page or "escalated",
            )  # fmt: skip
            out.starts.append(NextStep(step=Step.ESCALATE, ref=ref))
            return
        assert action.step is not None
        lease = store.leases.acquire(
            name, key, engine.owner_prefix + recovery_id, engine.lease_ttl_ms
        )
        if lease is None:
            metrics.lease_conflict()
            self._act(out, name, key, "scan", "lease_busy", "another worker is acting on it")
            return
        attempt = episode.attempts + 1
        if not dry_run:
            store.attempts.record_attempt(
                name,
                key,
                sid,
                now_ms=now_ms,
                next_not_before_ms=next_not_before(
                    attempt, now_ms=now_ms, policy=policy, seed=backoff_seed(name, key, attempt)
                ),
            )
            store.episodes.open(
                name,
                key,
                OpenEpisode(
                    session_id=sid,
                    verdict=verdict.kind.value,
                    since_ms=state.first_seen_ms if state else int(now_ms),
                    recovery_id=recovery_id,
                ),
            )
        ref = AttemptRef.of(
            name, verdict, recovery_id=lease.owner, attempt=attempt, lease_token=lease.token,
            dry_run=dry_run,
        )  # fmt: skip
        self.engine.audit(
            gateway=name,
            key=key,
            verdict=verdict.kind.value,
            step="detect",
            outcome="attempt_started",
            detail=f"{action.reason}: {verdict.reason}",
            fencing_token=lease.token,
            recovery_id=ref.recovery_id,
            dry_run=dry_run or None,
        )
        out.starts.append(NextStep(step=action.step, ref=ref))
        self._started += 1

    def _gateway_over_budget(
        self, spec: GatewaySpec, reason: str, dry_run: bool, out: ScanOutcome
    ) -> None:
        """Hands off the gateway's sessions for the hour; page once for it."""
        engine = self.engine
        if dry_run or not engine.store.budgets.mark_gateway_over(spec.name):
            return
        self._act(out, spec.name, None, "escalate", "gateway_flapping", reason)
        metrics.escalated("gateway_flapping")
        engine.pager.trigger(
            f"{spec.name}/flapping",
            gateway=spec.name,
            key=None,
            kind="flapping",
            details={"gateway": spec.name, "detail": reason},
        )

"""The recovery steps (abort, reset, verify, escalate): each re-reads before it acts.

Every mutating step, in this order:
1. reads the session again and re-classifies it; acts only if it is the very session detected
   (same sessionId, startedAt, run ids, verdict: `ladder.compare`), else stops;
2. renews its fenced lease (a holder whose lease expired stops here: `LeaseLost`);
3. claims the step for this attempt (SET NX), so a redelivered copy of the task does nothing;
4. writes its intent to the audit stream (an action whose record cannot be written is not taken);
5. sends one request, never retried blindly: what happened is settled by the next read.
In dry-run, step 5 is replaced by an audit record of what would have been sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from supervisor import failpoints, metrics
from supervisor.core.detect import Verdict, VerdictKind, classify
from supervisor.core.ladder import Binding, Step, compare
from supervisor.errors import (
    GatewayCallError,
    GatewayError,
    LeaseLost,
    MethodMissing,
    MissingScope,
    RedisNotDurable,
    StateError,
)
from supervisor.fleet import GatewaySpec
from supervisor.gateway.client import GatewayClient
from supervisor.gateway.models import ADMIN_SCOPE
from supervisor.recovery.context import Engine, session_dedup_key
from supervisor.recovery.models import AttemptRef, NextStep, StepResult
from supervisor.scan import view_of
from supervisor.state.episodes import OpenEpisode
from supervisor.state.leases import Lease

log = logging.getLogger(__name__)

#: verdicts that count as healed when verifying
HEALTHY = frozenset({VerdictKind.IDLE, VerdictKind.LIVE})


class _Stop(Exception):
    """Ends a step early with an outcome (not an error: the step did its job by stopping)."""

    def __init__(self, outcome: str, detail: str, *, release: bool = True) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail
        self.release = release


class _Resume(Exception):
    """Another delivery of this step claimed it; `answer` is what it got (None: unknown)."""

    def __init__(self, answer: str | None) -> None:
        super().__init__(answer)
        self.answer = answer


class _Healed(Exception):
    """The session is healthy already: go straight to verify, which closes the episode."""


def _tag(ref: AttemptRef) -> str:
    """Which session a failpoint fires for (see `failpoints`)."""
    return f"{ref.gateway}/{ref.key}"


def _lease(engine: Engine, ref: AttemptRef) -> Lease:
    return Lease(
        gateway=ref.gateway,
        key=ref.key,
        owner=ref.recovery_id,
        token=ref.lease_token,
        ttl_ms=engine.lease_ttl_ms,
        redis_key=engine.store.keys.lease(ref.gateway, ref.key),
        deadline=0.0,
    )


async def _reread(client: GatewayClient, spec: GatewaySpec, key: str) -> Verdict | None:
    """The session's verdict now, or None when the gateway no longer lists it."""
    rows = await client.list_sessions()
    view = view_of(client, rows)
    for row in rows:
        if row.key == key:
            return classify(row, gateway=view, policy=spec.policy)
    return None


class Steps:
    """Runs one step of one attempt; used by the Celery tasks and by `heal` alike."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- entry point -------------------------------------------------------------------------

    def run(self, step: Step, ref: AttemptRef) -> StepResult:
        started = time.perf_counter()
        handlers: dict[Step, Callable[[AttemptRef], Coroutine[Any, Any, StepResult]]] = {
            Step.ABORT: self._abort,
            Step.RESET: self._reset,
            Step.VERIFY: self._verify,
        }
        try:
            if step is Step.ESCALATE:
                result = self._escalate(ref)
            else:
                result = asyncio.run(handlers[step](ref))
        except _Healed as healed:
            result = self._result(
                ref, step, "healed_before", str(healed), NextStep(step=Step.VERIFY, ref=ref)
            )
        except _Stop as stop:
            if stop.release:
                self._release(ref)
            result = self._result(ref, step, stop.outcome, stop.detail)
        except LeaseLost as exc:
            result = self._result(ref, step, "lease_lost", str(exc))
        except RedisNotDurable as exc:
            self._release(ref)
            result = self._result(ref, step, "refused", str(exc))
        except GatewayError as exc:
            self._release(ref)
            self._record_error(ref, f"{step.value}: {exc}")
            result = self._result(ref, step, "gateway_error", str(exc))
        except StateError as exc:
            # Redis is gone: nothing was sent after this point; the lease expires by itself
            result = self._result(ref, step, "state_error", str(exc))
        result = result.model_copy(
            update={"duration_ms": round((time.perf_counter() - started) * 1000, 1)}
        )
        self.engine.audit(
            gateway=ref.gateway,
            key=ref.key,
            verdict=ref.verdict,
            step=step.value,
            outcome=result.outcome,
            detail=result.detail,
            fencing_token=ref.lease_token or None,
            duration_ms=result.duration_ms,
            recovery_id=ref.recovery_id,
            dry_run=ref.dry_run or None,
        )
        log.info(
            "%s %s %s: %s (%s)",
            ref.gateway,
            ref.key,
            step.value,
            result.outcome,
            result.detail,
            extra={
                "gateway": ref.gateway,
                "key": ref.key,
                "step": step.value,
                "recovery_id": ref.recovery_id,
                "outcome": result.outcome,
            },
        )
        metrics.action(step.value, result.outcome)
        return result

    def _result(
        self, ref: AttemptRef, step: Step, outcome: str, detail: str, nxt: NextStep | None = None
    ) -> StepResult:
        return StepResult(
            gateway=ref.gateway,
            key=ref.key,
            step=step.value,
            outcome=outcome,
            detail=detail,
            recovery_id=ref.recovery_id,
            attempt=ref.attempt,
            fencing_token=ref.lease_token or None,
            dry_run=ref.dry_run,
            next=nxt,
        )

    def _release(self, ref: AttemptRef) -> None:
        if not ref.lease_token:
            return
        try:
            self.engine.store.leases.release(_lease(self.engine, ref))
        except StateError as exc:
            log.warning("lease not released (it expires by itself): %s", exc)

    def _record_error(self, ref: AttemptRef, error: str) -> None:
        if ref.dry_run or ref.session_id is None:
            return
        try:
            self.engine.store.attempts.record_error(ref.gateway, ref.key, ref.session_id, error)
        except StateError as exc:
            log.warning("attempt error not recorded: %s", exc)

    # -- the common guard of mutating steps ----------------------------------------------------

    async def _guard(
        self, client: GatewayClient, spec: GatewaySpec, ref: AttemptRef, step: Step
    ) -> Verdict:
        """Re-read and re-bind, renew the lease, claim the step.

        Raises _Stop when the step must not act, and _Resume when another delivery of this
        very step already acted (or may have): the step then continues from its answer, or
        from a fresh read when the answer is unknown, and never sends again.
        """
        now = await _reread(client, spec, ref.key)
        failpoints.hit("after_reread", step.value, _tag(ref))
        if now is None:
            raise _Stop("gone", "the gateway no longer lists the session")
        binding = compare(ref.detected(), now)
        if binding is Binding.HEALED:
            raise _Healed(f"already healthy before {step.value}: {now.reason}")
        if binding is Binding.CHANGED:
            raise _Stop(
                "changed",
                f"the session changed since detection ({now.kind.value}: {now.reason}); not acting",
            )
        engine = self.engine
        if not ref.dry_run:
            engine.require_durable()
        engine.store.leases.extend(_lease(engine, ref), engine.lease_ttl_ms)
        failpoints.hit("after_lease", step.value, _tag(ref))
        name = self._claim_name(step, ref)
        claim = engine.store.episodes.claim_step(
            ref.recovery_id, name, engine.owner_prefix + ref.recovery_id
        )
        if claim.state == "done":
            raise _Resume(claim.answer)
        if claim.state != "new":
            # another delivery of this step is running, or died mid-step: wait for its answer
            wait_s = engine.claim_wait_s
            if wait_s is None:
                wait_s = spec.policy.call_timeout + 5
            raise _Resume(await self._await_answer(ref, name, wait_s))
        failpoints.hit("after_claim", step.value, _tag(ref))
        if not ref.dry_run:
            engine.audit_strict(
                gateway=ref.gateway,
                key=ref.key,
                verdict=ref.verdict,
                step=step.value,
                outcome="sending",
                fencing_token=ref.lease_token,
                recovery_id=ref.recovery_id,
            )
        return now

    async def _await_answer(self, ref: AttemptRef, name: str, wait_s: float) -> str | None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            claim = self.engine.store.episodes.step_claim(ref.recovery_id, name)
            if claim.state == "done":
                return claim.answer
            await asyncio.sleep(0.2)
        return None  # its worker died after claiming: the outcome is settled by reading again

    def _done(self, ref: AttemptRef, step: Step, answer: str) -> None:
        failpoints.hit("after_act", step.value, _tag(ref))
        self.engine.store.episodes.finish_step(ref.recovery_id, self._claim_name(step, ref), answer)

    @staticmethod
    def _claim_name(step: Step, ref: AttemptRef) -> str:
        return f"{step.value}-probe" if ref.probed and step is Step.ABORT else step.value

    # -- abort -------------------------------------------------------------------------------

    async def _abort(self, ref: AttemptRef) -> StepResult:
        spec = self.engine.spec(ref.gateway)
        async with GatewayClient(spec, self.engine.identity) as client:
            try:
                await self._guard(client, spec, ref, Step.ABORT)
            except _Resume as resume:
                return self._after_abort(ref, resume.answer, resumed=True)
            if ref.dry_run:
                answer = "dry_run"
            else:
                payload = await client.call("sessions.abort", {"key": ref.key})
                answer = str(payload.get("status")) if isinstance(payload, dict) else "?"
            self._done(ref, Step.ABORT, answer)
        return self._after_abort(ref, answer)

    def _after_abort(
        self, ref: AttemptRef, answer: str | None, *, resumed: bool = False
    ) -> StepResult:
        delay = self.engine.verify_delay_s
        if answer is None:
            # a delivery of this step died after claiming it: never abort again blindly.
            # A zombie goes on to reset (its guard reads again); an overdue run to verify.
            nxt_step = Step.RESET if ref.verdict == VerdictKind.ZOMBIE.value else Step.VERIFY
            return self._result(
                ref, Step.ABORT, "resumed", "an earlier delivery claimed this abort and died; "
                "not sending it again", NextStep(step=nxt_step, ref=ref, delay_s=delay),
            )  # fmt: skip
        if resumed:
            result = self._after_abort(ref, answer)
            return result.model_copy(
                update={"outcome": "resumed", "detail": f"already answered {answer!r}; "
                        + result.detail}
            )  # fmt: skip
        if answer == "dry_run":
            nxt_step = Step.RESET if ref.verdict == VerdictKind.ZOMBIE.value else Step.VERIFY
            return self._result(
                ref, Step.ABORT, "would_abort", "dry run: sessions.abort not sent",
                NextStep(step=nxt_step, ref=ref),
            )  # fmt: skip
        if ref.verdict == VerdictKind.ZOMBIE.value or ref.probed:
            if answer == "no-active-run":
                why = "no active run: the lane is dead" + (" (probe)" if ref.probed else "")
                nxt = ref.model_copy(update={"after": answer})
                return self._result(
                    ref, Step.ABORT, "no_active_run", why, NextStep(step=Step.RESET, ref=nxt)
                )
            # the gateway aborted a run: something was alive after all; never reset over it
            self._release(ref)
            return self._result(
                ref, Step.ABORT, "aborted_live_run",
                f"abort answered {answer!r}: a run was live; stopping without reset",
            )  # fmt: skip
        nxt = ref.model_copy(update={"after": answer})
        return self._result(
            ref, Step.ABORT, "aborted" if answer == "aborted" else answer.replace("-", "_"),
            f"abort answered {answer!r}", NextStep(step=Step.VERIFY, ref=nxt, delay_s=delay),
        )  # fmt: skip

    # -- reset -------------------------------------------------------------------------------

    async def _reset(self, ref: AttemptRef) -> StepResult:
        spec = self.engine.spec(ref.gateway)
        delay = self.engine.verify_delay_s
        async with GatewayClient(spec, self.engine.identity) as client:
            nxt = NextStep(step=Step.VERIFY, ref=ref, delay_s=delay)
            try:
                await self._guard(client, spec, ref, Step.RESET)
            except _Resume as resume:
                return self._result(
                    ref, Step.RESET, "resumed",
                    f"an earlier delivery already sent it ({resume.answer or 'answer unknown'})",
                    nxt,
                )  # fmt: skip
            if ref.dry_run:
                self._done(ref, Step.RESET, "dry_run")
                return self._result(ref, Step.RESET, "would_reset", "dry run: nothing sent", nxt)
            assert client.hello is not None
            scopes = client.hello.scopes
            if scopes is not None and ADMIN_SCOPE not in scopes:
                # 2026.9.6 needs operator.admin for /new too; without it /new only queues a
                # message behind the dead lane (measured): send nothing, let it escalate
                self._done(ref, Step.RESET, "cannot_reset")
                return self._result(
                    ref, Step.RESET, "cannot_reset",
                    "the gateway did not grant operator.admin: neither sessions.reset nor /new "
                    "can clear this lane", nxt,
                )  # fmt: skip
            params: dict[str, object] = {"key": ref.key}
            if client.hello.protocol >= 4 and ref.session_id:
                # the gateway's own compare-and-set: refuses if the session id changed meanwhile
                params["expectedSessionId"] = ref.session_id
            try:
                await client.call("sessions.reset", params)
            except MissingScope as exc:
                if client.hello.protocol >= 4:
                    self._done(ref, Step.RESET, "cannot_reset")
                    return self._result(ref, Step.RESET, "cannot_reset", str(exc), nxt)
                return await self._send_new(client, ref, nxt, f"sessions.reset unusable: {exc}")
            except MethodMissing as exc:
                return await self._send_new(client, ref, nxt, f"sessions.reset unusable: {exc}")
            except GatewayCallError as exc:
                if exc.reason == "session-changed":
                    self._done(ref, Step.RESET, "session-changed")
                    raise _Stop("changed", "the gateway refused: the session id changed") from exc
                raise
            self._done(ref, Step.RESET, "reset")
        return self._result(ref, Step.RESET, "reset", "sessions.reset accepted", nxt)

    async def _send_new(
        self, client: GatewayClient, ref: AttemptRef, nxt: NextStep, why: str
    ) -> StepResult:
        await client.call("sessions.send", {"key": ref.key, "message": "/new"})
        self._done(ref, Step.RESET, "new_sent")
        return self._result(ref, Step.RESET, "new_sent", f"{why}; sent /new instead", nxt)

    # -- verify ------------------------------------------------------------------------------

    async def _verify(self, ref: AttemptRef) -> StepResult:
        spec = self.engine.spec(ref.gateway)
        async with GatewayClient(spec, self.engine.identity) as client:
            now = await _reread(client, spec, ref.key)
        if now is None or now.kind in HEALTHY:
            why = "no longer listed" if now is None else f"{now.kind.value}: {now.reason}"
            self.finish_healed(ref.gateway, ref.key, ref.session_id, ref=ref)
            return self._result(ref, Step.VERIFY, "healed", why)
        same = compare(ref.detected(), now) is Binding.SAME
        if same and ref.verdict == VerdictKind.LIVE_OVERDUE.value and not ref.probed:
            # 2026.3.24 leaves the row `running` after aborting a live run: probe it
            nxt = ref.model_copy(update={"probed": True, "after": None})
            return self._result(
                ref, Step.VERIFY, "still_running",
                "the row stayed running after the abort; probing with a second abort",
                NextStep(step=Step.ABORT, ref=nxt),
            )  # fmt: skip
        self._release(ref)
        if ref.dry_run:
            return self._result(ref, Step.VERIFY, "unchanged", f"dry run: {now.kind.value}")
        detail = f"still {now.kind.value} after attempt {ref.attempt}: {now.reason}"
        self._record_error(ref, f"ineffective: {detail}")
        return self._result(ref, Step.VERIFY, "ineffective", detail)

    def finish_healed(
        self, gateway: str, key: str, session_id: str | None, *, ref: AttemptRef | None = None
    ) -> bool:
        """Close a healed episode: counters, escalation, incident, lease. True if escalated."""
        store = self.engine.store
        was_escalated = False
        if session_id is not None:
            state = store.attempts.get(gateway, key, session_id)
            if state is not None:
                metrics.healed((self.engine.now_ms() - state.first_seen_ms) / 1000)
            store.attempts.clear(gateway, key, session_id)
            was_escalated = store.attempts.clear_escalation(gateway, key, session_id)
        store.episodes.close(gateway, key)
        if ref is not None:
            self._release(ref)
        if was_escalated:
            metrics.resolved("session")
            self.engine.pager.resolve(session_dedup_key(gateway, key), gateway=gateway, key=key)
        return was_escalated

    def give_up(self, step: Step, ref: AttemptRef, deliveries: int) -> StepResult:
        """A step that crashed its worker `deliveries` times: stop redelivering, escalate once.

        With acks_late and reject_on_worker_lost Celery redelivers such a task forever
        (celery #9082); the cap is ours.
        """
        why = f"{step.value} crashed its worker {deliveries - 1} time(s); giving up on it"
        self._release(ref)
        self._record_error(ref, why)
        self.engine.audit(
            gateway=ref.gateway, key=ref.key, verdict=ref.verdict, step=step.value,
            outcome="abandoned", detail=why, recovery_id=ref.recovery_id,
        )  # fmt: skip
        metrics.action(step.value, "abandoned")
        escalated = self.run(Step.ESCALATE, ref)
        return escalated.model_copy(update={"detail": f"{why}; {escalated.detail}"})

    # -- escalate ----------------------------------------------------------------------------

    def _escalate(self, ref: AttemptRef) -> StepResult:
        engine = self.engine
        store = engine.store
        sid = ref.session_id or ""
        state = store.attempts.get(ref.gateway, ref.key, sid)
        reason = f"{state.count if state else ref.attempt} attempt(s) did not heal it" + (
            f"; last: {state.last_error}" if state and state.last_error else ""
        )
        if ref.dry_run:
            return self._result(ref, Step.ESCALATE, "would_escalate", reason)
        if not store.attempts.mark_escalated(
            ref.gateway, ref.key, sid, now_ms=engine.now_ms(), reason=reason
        ):
            return self._result(ref, Step.ESCALATE, "already_escalated", reason)
        store.episodes.open(
            ref.gateway,
            ref.key,
            OpenEpisode(
                session_id=sid,
                verdict=ref.verdict,
                since_ms=state.first_seen_ms if state else int(engine.now_ms()),
                escalated=True,
                recovery_id=ref.recovery_id,
            ),
        )
        metrics.escalated("session")
        engine.pager.trigger(
            session_dedup_key(ref.gateway, ref.key),
            gateway=ref.gateway,
            key=ref.key,
            kind="escalated",
            details={
                "gateway": ref.gateway,
                "key": ref.key,
                "verdict": ref.verdict,
                "attempts": state.count if state else ref.attempt,
                "last_error": state.last_error if state else None,
                "age_s": round((engine.now_ms() - state.first_seen_ms) / 1000) if state else None,
            },
        )
        return self._result(ref, Step.ESCALATE, "escalated", reason)

"""The recovery steps (abort, reset, verify, escalate): they read, ask the ladder, and do.

Every decision is `core.ladder.next_action`'s. A mutating step, in this order:
1. does all its Redis work first: durability check, the step claim (SET NX: a redelivered copy
   resumes from the first copy's answer and never sends again), its intent in the audit stream
   (an action whose record cannot be written is not taken), and the fenced lease renewal (one
   script compares our token and extends; its start fixes the local monotonic deadline);
2. then reads the session (the final read) and asks the ladder, which checks that the row is
   the one detected, that the read is at most `act_window` old and the lease deadline not past;
3. then sends at once, nothing in between; the runs seen starting on the session since the
   final read (events on our own socket, which arrive before the answer) tell a collision.
In dry-run, the request is replaced by an audit record of what would have been sent.
"""

from __future__ import annotations

import asyncio
import logging
import time

from supervisor import failpoints, metrics
from supervisor.core.attempt import AttemptRef
from supervisor.core.detect import Verdict, VerdictKind, classify
from supervisor.core.ladder import (
    Action,
    Answered,
    Kind,
    Read,
    Redelivered,
    Step,
    counts_toward_budget,
    dropped_held,
    next_action,
)
from supervisor.core.policy import Policy
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
from supervisor.recovery.closing import close_episode
from supervisor.recovery.context import Engine, session_dedup_key
from supervisor.recovery.held import (
    LOST_STATES,
    arrived_after,
    held_messages,
    idempotency_key,
    oldest,
    pending_inputs,
    waiting_run_ids,
)
from supervisor.recovery.models import NextStep, StepResult
from supervisor.scan import view_of
from supervisor.state.episodes import OpenEpisode
from supervisor.state.held import DroppedSummary, HeldMessage
from supervisor.state.leases import Lease

log = logging.getLogger(__name__)


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


async def read_session(
    client: GatewayClient, spec: GatewaySpec, key: str
) -> tuple[Verdict | None, float]:
    """The session's verdict now (None when not listed) and when its page was asked for."""
    rows = await client.list_sessions()
    view = view_of(client, rows)
    for index, row in enumerate(rows):
        if row.key == key:
            return classify(row, gateway=view, policy=spec.policy), client.page_sent_at(index)
    return None, client.page_sent_at(None)


#: gateways (name, server version) whose sessions.reset refused `expectedSessionId`
_NO_EXPECTED_SESSION_ID: set[tuple[str, str | None]] = set()


def _line_of(client: GatewayClient) -> tuple[str, str | None]:
    assert client.hello is not None
    return client.name, client.hello.server_version


def _takes_expected_session_id(client: GatewayClient) -> bool:
    return _line_of(client) not in _NO_EXPECTED_SESSION_ID


def _refuses_expected_session_id(exc: GatewayCallError) -> bool:
    return exc.code == "INVALID_REQUEST" and "expectedSessionId" in str(exc)


def _late(read_at: float, deadline: float, policy: Policy) -> bool:
    """Whether the final read is too old to act on, or our lease's local deadline passed."""
    mono = time.monotonic()
    return mono - read_at > policy.act_window or mono >= deadline


class _Sent:
    """What a mutating request got: the answer, and when the final read was sent."""

    def __init__(self, answer: str, read_at: float, known_runs: tuple[str, ...]) -> None:
        self.answer = answer
        self.read_at = read_at
        self.known_runs = known_runs


class Steps:
    """Runs one step of one attempt; used by the Celery tasks and by `heal` alike."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._redelivered_count = 0

    # -- entry point -------------------------------------------------------------------------

    def run(self, step: Step, ref: AttemptRef) -> StepResult:
        started = time.perf_counter()
        self._read_to_send_ms: float | None = None
        try:
            if step is Step.ESCALATE:
                result = self._escalate(ref)
            elif step is Step.VERIFY:
                result = asyncio.run(self._verify(ref))
            elif step is Step.REDELIVER:
                result = asyncio.run(self._redeliver(ref))
            else:
                result = asyncio.run(self._mutate(step, ref))
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
            read_to_send_ms=self._read_to_send_ms,
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

    def _follow(self, ref: AttemptRef, step: Step, action: Action) -> StepResult:
        """Do what the ladder decided after this step (the edge's half of every transition)."""
        if action.kind is Kind.NEXT:
            assert action.step is not None
            if action.error:
                self._record_error(ref, action.error)
            nxt = ref.model_copy(update=dict(action.update)) if action.update else ref
            delay = self.engine.verify_delay_s if action.settle else 0.0
            return self._result(
                ref, step, action.outcome, action.reason,
                NextStep(step=action.step, ref=nxt, delay_s=delay),
            )  # fmt: skip
        if action.kind is Kind.CLOSE:
            lease = _lease(self.engine, ref) if ref.lease_token else None
            if not ref.dry_run:
                close_episode(
                    self.engine, ref.gateway, ref.key, ref.session_id,
                    lease=lease, healed=action.healed,
                )  # fmt: skip
            elif lease is not None:
                self._release(ref)
            if dropped_held(ref):
                self._note_dropped(ref, step, action)
            if action.page == "collided":
                self._page_once(ref, step, "collided", action.reason)
            elif action.page == "messages_dropped":
                self._page_dropped(ref, step, action.reason)
            return self._result(ref, step, action.outcome, action.reason)
        # STOP (and anything unexpected, which must never act)
        if action.release:
            self._release(ref)
        if action.error:
            self._record_error(ref, action.error)
        return self._result(ref, step, action.outcome or action.kind.value, action.reason)

    def _page_once(
        self, ref: AttemptRef, step: Step, kind: str, reason: str, **extra: object
    ) -> None:
        """One page per recovery (its id in the dedup key) for what it did and cannot undo."""
        metrics.escalated(kind)
        self.engine.pager.trigger(
            f"{session_dedup_key(ref.gateway, ref.key)}/{kind}/{ref.recovery_id}",
            gateway=ref.gateway,
            key=ref.key,
            kind=kind,
            details={
                "gateway": ref.gateway,
                "key": ref.key,
                "step": step.value,
                "recovery_id": ref.recovery_id,
                **extra,
                "detail": reason,
            },
        )

    def _page_dropped(self, ref: AttemptRef, step: Step, reason: str) -> None:
        """Users' messages our reset threw away and we could not give back: who wrote, how
        many, since when (the page names the audit command with the story)."""
        held = self._held(ref)
        self._page_once(
            ref, step, "messages_dropped", reason,
            dropped=len(ref.dropped), run_ids=", ".join(ref.dropped),
            waiting_since_ms=ref.held_since_ms or oldest(held or []),
        )  # fmt: skip

    def _note_dropped(self, ref: AttemptRef, step: Step, action: Action) -> None:
        held = self._held(ref) or []
        summary = DroppedSummary(
            key=ref.key,
            recovery_id=ref.recovery_id,
            dropped=len(ref.dropped),
            redelivered=self._redelivered_count if step is Step.REDELIVER else 0,
            since_ms=ref.held_since_ms or oldest(held),
        )
        try:
            self.engine.store.held.note_closed(ref.gateway, summary, now_ms=self.engine.now_ms())
        except StateError as exc:
            log.warning("dropped messages not counted for status: %s", exc)

    def _held(self, ref: AttemptRef) -> list[HeldMessage] | None:
        try:
            return self.engine.store.held.load(ref.recovery_id)
        except StateError as exc:
            log.warning("held messages not read: %s", exc)
            return None

    # -- mutating steps ----------------------------------------------------------------------

    async def _mutate(self, step: Step, ref: AttemptRef) -> StepResult:
        engine = self.engine
        spec = engine.spec(ref.gateway)
        policy = spec.policy
        name = self._claim_name(step, ref)
        async with GatewayClient(spec, engine.identity) as client:
            await self._watch_sessions(client)
            # 1. every Redis round trip before the final read
            if not ref.dry_run:
                engine.require_durable()
            failpoints.hit("before_claim", step.value, _tag(ref))
            claim = engine.store.episodes.claim_step(
                ref.recovery_id, name, engine.owner_prefix + ref.recovery_id
            )
            if claim.state != "new":
                answer = claim.answer
                if claim.state != "done":
                    # another delivery is running, or died mid-step: wait for its answer
                    wait_s = engine.claim_wait_s
                    if wait_s is None:
                        wait_s = policy.call_timeout + 5
                    answer = await self._await_answer(ref, name, wait_s)
                held = (self._held(ref) or []) if step is Step.RESET else []
                observed = Answered(
                    step, answer, resumed=True, waiting=tuple(m.run_id for m in held),
                    held_since_ms=oldest(held),
                )  # fmt: skip
                return self._follow(ref, step, self._decide(ref, observed, policy))
            failpoints.hit("after_claim", step.value, _tag(ref))
            waiting, readable, read_ms = await self._record_held(client, step, ref, policy)
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
            try:
                lease = engine.store.leases.extend(_lease(engine, ref), engine.lease_ttl_ms)
            except LeaseLost:
                engine.store.episodes.finish_step(ref.recovery_id, name, "lease_lost")
                raise
            deadline = lease.deadline - engine.lease_margin_s
            failpoints.hit("after_lease", step.value, _tag(ref))
            # 2. the final read, and the ladder's word on it
            now, read_at = await read_session(client, spec, ref.key)
            failpoints.hit("after_reread", step.value, _tag(ref))
            assert client.hello is not None
            scopes = client.hello.scopes
            mono = time.monotonic()
            read = Read(
                step,
                now,
                read_age_s=mono - read_at,
                lease_left_s=deadline - mono,
                can_reset=scopes is None or ADMIN_SCOPE in scopes,
            )
            action = self._decide(ref, read, policy)
            if action.kind is not Kind.SEND:
                engine.store.episodes.finish_step(ref.recovery_id, name, action.outcome)
                return self._follow(ref, step, action)
            # 3. at once: the request
            failpoints.hit("before_send", step.value, _tag(ref))
            sent = await self._send(client, step, ref, now, read_at, deadline, policy)
            collided = bool(
                client.runs_started_since(
                    ref.key, sent.read_at, sent.known_runs, unnamed=ref.dead_lane
                )
            )
            self._done(ref, step, sent.answer)
            if not ref.dry_run and counts_toward_budget(step, sent.answer):
                engine.store.budgets.record_heal(
                    ref.gateway, ref.key, ref.recovery_id,
                    now_ms=engine.now_ms(), window_s=policy.heal_budget_window,
                )  # fmt: skip
        observed = Answered(
            step, sent.answer, collided=collided, waiting=tuple(m.run_id for m in waiting),
            held_since_ms=oldest(waiting), readable=readable, recorded_at_ms=read_ms,
        )  # fmt: skip
        return self._follow(ref, step, self._decide(ref, observed, policy))

    async def _record_held(
        self, client: GatewayClient, step: Step, ref: AttemptRef, policy: Policy
    ) -> tuple[list[HeldMessage], bool, float | None]:
        """Before a reset: record the users' messages waiting behind the lane, which it will
        throw away (when each was sent; its text too for `redeliver`).

        Not only a `held` row's: on real 2026.9.6 a message sent to a zombie also waited in
        `pendingInputs` while the row kept the zombie shape (`activeRunIds: []`), so every
        reset looks. A record that cannot be written stops the step like the audit intent
        does (StateError): no reset drops what we did not write down first."""
        if step is not Step.RESET or ref.dry_run:
            return [], False, None
        read_ms = client.gateway_now_ms()
        listed = await pending_inputs(client, ref.key)
        waiting = list(ref.run_ids) if ref.verdict == VerdictKind.HELD.value else []
        waiting += [r for r in waiting_run_ids(listed) if r not in waiting]
        if not waiting:
            return [], listed is not None, read_ms
        messages = held_messages(
            tuple(waiting), listed, keep_text=policy.held_messages == "redeliver"
        )
        self.engine.store.held.record(ref.recovery_id, messages, ttl_s=policy.redeliver_max_age)
        return messages, listed is not None, read_ms

    @staticmethod
    async def _watch_sessions(client: GatewayClient) -> None:
        """Ask for `sessions.changed` where the gateway has it: on 2026.9.6 the only witness
        of a message that arrives, held behind the dead lane, while our request is on its way."""
        assert client.hello is not None
        if client.hello.methods is None or "sessions.subscribe" not in client.hello.methods:
            return
        try:
            await client.call("sessions.subscribe", {})
        except GatewayCallError as exc:
            log.warning("%s: sessions.subscribe refused (%s); run events only", client.name, exc)

    def _decide(
        self, ref: AttemptRef, observation: Read | Answered | Redelivered, policy: Policy
    ) -> Action:
        return next_action(ref, observation, policy, self.engine.now_ms())

    async def _send(
        self,
        client: GatewayClient,
        step: Step,
        ref: AttemptRef,
        now: Verdict | None,
        read_at: float,
        deadline: float,
        policy: Policy,
    ) -> _Sent:
        known = now.run_ids if now is not None else ()
        self._read_to_send_ms = round((time.monotonic() - read_at) * 1000, 3)
        metrics.read_to_send(step.value, self._read_to_send_ms / 1000)
        if ref.dry_run:
            return _Sent("dry_run", read_at, known)
        if _late(read_at, deadline, policy):
            # checked again at the last moment: a process paused (GC, SIGSTOP, a VM freeze)
            # after the ladder's check would otherwise send on a read seconds old (chaos row 26)
            return _Sent("stale_read", read_at, known)
        assert client.hello is not None
        v4 = client.hello.protocol >= 4
        if step is Step.ABORT:
            params: dict[str, object] = {"key": ref.key}
            if v4 and ref.verdict == VerdictKind.LIVE_OVERDUE.value and len(ref.run_ids) == 1:
                # the gateway's own fence: abort exactly the run classified overdue
                params["runId"] = ref.run_ids[0]
            payload = await client.call("sessions.abort", params)
            answer = str(payload.get("status")) if isinstance(payload, dict) else "?"
            aborted = payload.get("abortedRunId") if isinstance(payload, dict) else None
            if isinstance(aborted, str) and ref.verdict == VerdictKind.LIVE_OVERDUE.value:
                known = (*known, aborted)  # the overdue run we meant to stop is no collision
            return _Sent(answer, read_at, known)
        params = {"key": ref.key}
        fenced = v4 and bool(ref.session_id) and _takes_expected_session_id(client)
        if fenced:
            # the gateway's own compare-and-set: refuses if the session id changed meanwhile
            params["expectedSessionId"] = ref.session_id
        try:
            try:
                await client.call("sessions.reset", params)
            except GatewayCallError as exc:
                if not (fenced and _refuses_expected_session_id(exc)):
                    raise
                # 2026.5.28 and 2026.7.35 speak protocol 4 but refuse the parameter, before
                # touching anything (measured): remember it, and reset by key if still in time
                _NO_EXPECTED_SESSION_ID.add(_line_of(client))
                params.pop("expectedSessionId")
                if _late(read_at, deadline, policy):
                    return _Sent("stale_read", read_at, known)
                await client.call("sessions.reset", params)
            return _Sent("reset", read_at, known)
        except MissingScope:
            if v4:
                return _Sent("cannot_reset", read_at, known)
        except MethodMissing:
            pass
        except GatewayCallError as exc:
            if exc.reason == "session-changed":
                return _Sent("session-changed", read_at, known)
            raise
        # sessions.reset unusable: /new does the same, if the read is still fresh enough
        if _late(read_at, deadline, policy):
            return _Sent("stale_read", read_at, known)
        await client.call("sessions.send", {"key": ref.key, "message": "/new"})
        return _Sent("new_sent", read_at, known)

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

    # -- verify ------------------------------------------------------------------------------

    async def _verify(self, ref: AttemptRef) -> StepResult:
        spec = self.engine.spec(ref.gateway)
        policy = spec.policy
        async with GatewayClient(spec, self.engine.identity) as client:
            now, _ = await read_session(client, spec, ref.key)
            action = self._decide(ref, Read(Step.VERIFY, now), policy)
            if action.kind is Kind.CONFIRM:
                again, _ = await read_session(client, spec, ref.key)
                read = Read(Step.VERIFY, again, absence_confirmed=again is None)
                action = self._decide(ref, read, policy)
        return self._follow(ref, Step.VERIFY, action)

    # -- redeliver ---------------------------------------------------------------------------

    async def _redeliver(self, ref: AttemptRef) -> StepResult:
        """Send again, in order and once each, the messages our reset threw away.

        Only a message the gateway itself shows lost (pending input `interrupted`) is sent: one
        answered or still queued was not lost. Each send carries an idempotency key made from
        its run id (a second send with it runs nothing) and claims `(recovery, run id)` first,
        so a redelivered task, or two workers, send each message once.
        """
        engine = self.engine
        spec = engine.spec(ref.gateway)
        policy = spec.policy
        held = self._held(ref) or [HeldMessage(run_id=r) for r in ref.dropped]
        sent = too_old = unreadable = not_lost = failed = 0
        # still ours? (fenced: a holder that lost the lease sends nothing; LeaseLost ends it)
        engine.store.leases.extend(_lease(engine, ref), engine.lease_ttl_ms)
        now_ms = engine.now_ms()
        async with GatewayClient(spec, engine.identity) as client:
            listed = await pending_inputs(client, ref.key)
            # a message that came after our read (a collision) was dropped by the reset too
            held += arrived_after(listed, ref.recorded_at_ms, {m.run_id for m in held})
            for message in held:
                item = (listed or {}).get(message.run_id)
                state = item.get("state") if item is not None else None
                if message.text is None or item is None:
                    unreadable += 1
                    continue
                if state not in LOST_STATES:
                    not_lost += 1
                    continue
                if (
                    message.sent_at_ms is None
                    or now_ms - message.sent_at_ms > policy.redeliver_max_age * 1000
                ):
                    too_old += 1
                    continue
                name = f"redeliver-{message.run_id}"
                claim = engine.store.episodes.claim_step(
                    ref.recovery_id, name, engine.owner_prefix + ref.recovery_id
                )
                if claim.state == "done":
                    sent += claim.answer == "sent"
                    failed += claim.answer != "sent"
                    continue
                # new, or claimed by a delivery that died: the idempotency key makes it safe
                failpoints.hit("before_send", Step.REDELIVER.value, _tag(ref))
                try:
                    await client.call(
                        "sessions.send",
                        {
                            "key": ref.key,
                            "message": message.text,
                            "idempotencyKey": idempotency_key(ref.gateway, message.run_id),
                        },
                    )
                except GatewayCallError as exc:
                    log.warning("%s %s: redelivery refused: %s", ref.gateway, ref.key, exc)
                    engine.store.episodes.finish_step(ref.recovery_id, name, "refused")
                    failed += 1
                    continue
                engine.store.episodes.finish_step(ref.recovery_id, name, "sent")
                sent += 1
        self._redelivered_count = sent
        done = Redelivered(
            sent=sent, too_old=too_old, unreadable=unreadable, not_lost=not_lost,
            failed=failed, since_ms=oldest(held),
        )  # fmt: skip
        return self._follow(ref, Step.REDELIVER, self._decide(ref, done, policy))

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
        # an attempt that ends in an escalation leaves the session to a person: its lease goes
        self._release(ref)
        engine = self.engine
        store = engine.store
        sid = ref.session_id or ""
        policy = engine.spec(ref.gateway).policy
        state = store.attempts.get(ref.gateway, ref.key, sid)
        flapping = ref.escalation == "flapping"
        now_ms = engine.now_ms()
        history: list[int] = []
        if flapping:
            history, _ = store.budgets.counts(
                ref.gateway, ref.key, now_ms=now_ms, window_s=policy.heal_budget_window
            )
            ago = ", ".join(f"{(now_ms - t) / 60000:.0f}m" for t in history)
            reason = (
                f"flapping: reset {len(history)} time(s) within the heal budget window "
                f"({ago} ago) and dead again; hands off until `clear` or the window passes"
            )
        else:
            reason = f"{state.count if state else ref.attempt} attempt(s) did not heal it" + (
                f"; last: {state.last_error}" if state and state.last_error else ""
            )
        if ref.dry_run:
            return self._result(ref, Step.ESCALATE, "would_escalate", reason)
        if flapping:
            first = store.budgets.mark_flapping(
                ref.gateway, ref.key, ttl_s=policy.heal_budget_window
            )
        else:
            first = store.attempts.mark_escalated(
                ref.gateway, ref.key, sid, now_ms=now_ms, reason=reason
            )
        if not first:
            return self._result(ref, Step.ESCALATE, "already_escalated", reason)
        store.episodes.open(
            ref.gateway,
            ref.key,
            OpenEpisode(
                session_id=sid,
                verdict=ref.verdict,
                since_ms=state.first_seen_ms if state else int(now_ms),
                escalated=True,
                recovery_id=ref.recovery_id,
            ),
        )
        kind = "flapping" if flapping else "escalated"
        # held and zombie lanes: how many users wait behind it (None: the gateway cannot say)
        dead = ref.verdict in (VerdictKind.HELD.value, VerdictKind.ZOMBIE.value)
        waiting: dict[str, object] = {"messages_waiting": ref.waiting} if dead else {}
        metrics.escalated("flapping" if flapping else "session")
        engine.pager.trigger(
            session_dedup_key(ref.gateway, ref.key),
            gateway=ref.gateway,
            key=ref.key,
            kind=kind,
            details={
                "gateway": ref.gateway,
                "key": ref.key,
                "verdict": ref.verdict,
                "attempts": state.count if state else ref.attempt,
                "last_error": state.last_error if state else None,
                "age_s": round((now_ms - state.first_seen_ms) / 1000) if state else None,
                "resets_in_window": len(history) if flapping else None,
            }
            | waiting,
        )
        return self._result(ref, Step.ESCALATE, "flapping" if flapping else "escalated", reason)

"""The Celery tasks: one periodic scan per gateway, and one task per recovery step.

Each step is its own task with a readable name, so Flower tells the story of a recovery:
`supervisor.scan_gateway` -> `supervisor.abort_session` -> `supervisor.reset_session` ->
`supervisor.verify_session` (-> `supervisor.escalate_session`). Arguments are the gateway name,
the session key and the attempt's evidence: never a token (workers read tokens from the fleet
file). Results are small JSON documents saying what happened.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Task
from celery.signals import worker_init

from supervisor import failpoints, heartbeat  # noqa: F401  (heartbeat: worker signals)
from supervisor.app import VISIBILITY_TIMEOUT_S, app
from supervisor.core.attempt import AttemptRef
from supervisor.core.ladder import Step
from supervisor.core.rules import Limits, limit_problems
from supervisor.errors import ConfigError, StateError
from supervisor.escalation.pager import Delivery
from supervisor.recovery.context import Engine, FleetSource
from supervisor.recovery.models import NextStep
from supervisor.recovery.runtime import build_engine, deliver_audited
from supervisor.recovery.scanner import Scanner
from supervisor.recovery.steps import Steps
from supervisor.settings import get_settings

log = logging.getLogger(__name__)

#: the longest countdown a step is sent with, whatever SUPERVISOR_VERIFY_DELAY_S says: a task
#: whose countdown outlives the visibility timeout is delivered again and again (celery #2599);
#: longer waits belong in Redis as a "not before" time that the scan reads
MAX_COUNTDOWN_S = VISIBILITY_TIMEOUT_S / 10

#: whether the worker sends task events for scans and the paging tick (the worker half of
#: SUPERVISOR_PERIODIC_EVENTS; beat leaves out their task-sent events, supervisor.schedule)
_PERIODIC_EVENTS = get_settings().periodic_events

_engine: Engine | None = None
_engine_lock = threading.Lock()
#: the fleet file as the worker's main process read it at startup, inherited by every prefork
#: child: a child forked (or replaced) after the file broke still starts on the last good
#: fleet instead of failing every task
_preloaded: FleetSource | None = None


@worker_init.connect
def _preload_fleet(**_: object) -> None:
    global _preloaded
    path = get_settings().fleet
    if path is None:
        return
    source = FleetSource(path)
    try:
        source.get()
    except ConfigError as exc:  # the children report it on their first task
        log.error("fleet file not loaded at worker start: %s", exc)
        return
    _preloaded = source


def get_engine() -> Engine:
    """This worker process's engine, built on first use (after the prefork fork)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            settings = get_settings()
            if settings.redis_url is None:
                raise ConfigError("SUPERVISOR_REDIS_URL is not set")
            _engine = build_engine(
                settings,
                settings.redis_url.get_secret_value(),
                submit=lambda d: deliver_page.apply_async(kwargs=d.as_task_kwargs()),
                source=_preloaded,
            )
        return _engine


#: pools whose workers Celery cannot kill at the hard time limit
_NO_HARD_LIMIT = ("threads", "solo", "eventlet", "gevent")


def worker_limits(pool: str) -> Limits:
    """The time limits a step of this worker runs under."""
    settings = get_settings()
    hard = None if any(p in pool.lower() for p in _NO_HARD_LIMIT) else settings.step_time_limit_s
    return Limits(
        lease_ttl_s=settings.lease_ttl_s,
        step_hard_limit_s=hard,
        visibility_timeout_s=float(VISIBILITY_TIMEOUT_S),
        act_window_s=max((spec.policy.act_window for spec in _fleet_specs()), default=0.25),
        lease_margin_s=min(settings.lease_margin_s, settings.lease_ttl_s / 10),
    )


def _fleet_specs() -> list[Any]:
    # read here, not through get_engine(): the worker's parent must not open Redis before
    # forking its children
    from supervisor.fleet import load_fleet

    path = get_settings().fleet
    try:
        return list(load_fleet(path).gateways) if path is not None else []
    except Exception:  # the fleet is checked where it is used; here only its act windows
        return []


@worker_init.connect
def _refuse_unsafe_limits(sender: Any = None, **_: object) -> None:
    """A worker whose limits would let a step act on a lease no longer its own does not start."""
    pool = getattr(getattr(sender, "pool_cls", None), "__name__", "") or str(
        getattr(sender, "pool_cls", "")
    )
    problems = limit_problems(worker_limits(pool))
    if problems:
        log.critical("refusing to start: %s", "; ".join(problems))
        raise SystemExit(f"lane-supervisor worker refuses to start: {'; '.join(problems)}")


def enqueue(nxt: NextStep) -> str:
    """Send a step as its task; returns the task id."""
    task: Task = STEP_TASKS[nxt.step]
    ref = nxt.ref
    limit = get_settings().step_time_limit_s
    result = task.apply_async(
        kwargs={"gateway": ref.gateway, "key": ref.key, "ref": ref.model_dump(mode="json")},
        countdown=min(nxt.delay_s, MAX_COUNTDOWN_S) or None,
        time_limit=limit,
        soft_time_limit=limit * 0.75,
    )
    return str(result.id)


@app.task(name="supervisor.scan_gateway", send_events=_PERIODIC_EVENTS)
def scan_gateway(gateway: str) -> dict[str, Any]:
    """Scan one gateway and start the recovery steps it decides on."""
    try:
        out = Scanner(get_engine()).scan(gateway)
    except ConfigError as exc:
        log.error("scan of %s skipped: %s", gateway, exc)
        return {"gateway": gateway, "outcome": "config_error", "detail": str(exc)}
    except StateError as exc:
        # Redis is down or refusing: nothing was acted on; the next scheduled scan tries again
        log.error("scan of %s stopped: %s", gateway, exc)
        return {"gateway": gateway, "outcome": "state_error", "detail": str(exc)}
    started = [{"step": n.step.value, "key": n.ref.key, "task_id": enqueue(n)} for n in out.starts]
    counts: dict[str, int] = {}
    for s in out.report.sessions:
        counts[s.verdict] = counts.get(s.verdict, 0) + 1
    return {
        "gateway": gateway,
        "outcome": "error" if out.report.error else "scanned",
        "error": out.report.error,
        "verdicts": counts,
        "started": started,
        "actions": [a.action() for a in out.actions],
    }


def _run(task: Task, step: Step, gateway: str, key: str, ref: dict[str, Any]) -> dict[str, Any]:
    attempt = AttemptRef.model_validate(ref)
    if (attempt.gateway, attempt.key) != (gateway, key):
        raise ValueError("the task's gateway/key do not match its attempt")
    engine = get_engine()
    steps = Steps(engine)
    deliveries = engine.store.episodes.count_delivery(str(task.request.id))
    if deliveries > get_settings().max_step_deliveries:
        result = steps.give_up(step, attempt, deliveries)
    else:
        result = steps.run(step, attempt)
    doc = result.action()
    if result.next is not None:
        doc["next"] = {"step": result.next.step.value, "task_id": enqueue(result.next)}
    failpoints.hit("before_ack", step.value, f"{attempt.gateway}/{attempt.key}")
    return doc


@app.task(name="supervisor.abort_session", bind=True)
def abort_session(self: Task, gateway: str, key: str, ref: dict[str, Any]) -> dict[str, Any]:
    """Abort: evidence on a zombie ("no-active-run"), the stop of an overdue live run."""
    return _run(self, Step.ABORT, gateway, key, ref)


@app.task(name="supervisor.reset_session", bind=True)
def reset_session(self: Task, gateway: str, key: str, ref: dict[str, Any]) -> dict[str, Any]:
    """Reset the lane (`sessions.reset`, or `/new` where reset is missing or forbidden)."""
    return _run(self, Step.RESET, gateway, key, ref)


@app.task(name="supervisor.verify_session", bind=True)
def verify_session(self: Task, gateway: str, key: str, ref: dict[str, Any]) -> dict[str, Any]:
    """Read the session again: healed, or the attempt was ineffective."""
    return _run(self, Step.VERIFY, gateway, key, ref)


@app.task(name="supervisor.redeliver_session", bind=True)
def redeliver_session(self: Task, gateway: str, key: str, ref: dict[str, Any]) -> dict[str, Any]:
    """Send again the messages our reset of a held lane dropped (held_messages = redeliver)."""
    return _run(self, Step.REDELIVER, gateway, key, ref)


@app.task(name="supervisor.escalate_session", bind=True)
def escalate_session(self: Task, gateway: str, key: str, ref: dict[str, Any]) -> dict[str, Any]:
    """Attempts exhausted: page once and keep hands off until it heals or is cleared."""
    return _run(self, Step.ESCALATE, gateway, key, ref)


STEP_TASKS: dict[Step, Task] = {
    Step.ABORT: abort_session,
    Step.RESET: reset_session,
    Step.VERIFY: verify_session,
    Step.REDELIVER: redeliver_session,
    Step.ESCALATE: escalate_session,
}


@app.task(name="supervisor.deliver_page")
def deliver_page(dedup_key: str, provider: str, seq: int) -> dict[str, Any]:
    """Send one notification (trigger, re-notify or resolve) to one paging provider.

    Arguments are names and numbers: the task re-reads the incident and loads the provider's
    secrets from the fleet file. A failure is retried by `page_tick` after its backoff.
    """
    return deliver_audited(get_engine(), Delivery(dedup_key=dedup_key, provider=provider, seq=seq))


@app.task(name="supervisor.page_tick", send_events=_PERIODIC_EVENTS)
def page_tick() -> dict[str, Any]:
    """Re-notify open incidents past their interval; resend deliveries that failed retryably."""
    engine = get_engine()
    sent = engine.pager.tick()
    return {"submitted": [d.as_task_kwargs() for d in sent]}

"""Static configuration invariants (row 16), read from the app and the code as they ship.

Each invariant is one "run": it holds or it does not. tests/test_app.py checks
some of these one by one; here they are counted with the rest, plus the ones chaos runs depend
on (no countdown past the visibility timeout whatever the settings say, every `apply_async`
accounted for, beat entries that expire within their interval, claims that outlive
redeliveries).
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

from supervisor import app as app_module
from supervisor.app import SOFT_TIME_LIMIT_S, TIME_LIMIT_S, VISIBILITY_TIMEOUT_S, app
from supervisor.core.attempt import AttemptRef
from supervisor.core.policy import Policy
from supervisor.recovery.models import NextStep
from supervisor.schedule import desired_entries
from supervisor.settings import Settings
from supervisor.state.episodes import DEFAULT_CLAIM_TTL_S
from tests.chaos.oracle import Row
from tests.support.fixtures import spec_for

PACKAGE = Path(app_module.__file__).resolve().parent


def _effective_visibility() -> tuple[Any, Any]:
    with app.connection_for_write() as conn:
        broker = conn.transport_options.get("visibility_timeout")
    return broker, app.conf.result_backend_transport_options.get("visibility_timeout")


def _countdowns_sent(delay_s: float) -> list[Any]:
    """The countdown each step task would be sent with for a follow-up `delay_s` away."""
    import supervisor.tasks as tasks

    ref = AttemptRef(
        gateway="g", key="k", verdict="zombie", recovery_id="r", attempt=1, lease_token=1
    )
    seen: list[Any] = []
    for step, task in tasks.STEP_TASKS.items():
        with mock.patch.object(task, "apply_async") as send:
            send.return_value.id = "x"
            tasks.enqueue(NextStep(step=step, ref=ref, delay_s=delay_s))
            seen.append(send.call_args.kwargs.get("countdown"))
    return seen


def _apply_async_calls() -> list[str]:
    """Every `.apply_async(...)`/`.send_task(...)`/`.retry(...)` call in the package, with
    the keyword arguments it passes (file:line kwargs)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"apply_async", "send_task", "retry", "signature", "s"}
            ):
                kws = sorted(k.arg or "**" for k in node.keywords)
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {','.join(kws)}")
    return found


def _step_time_limits() -> dict[str, tuple[Any, Any]]:
    import supervisor.tasks  # noqa: F401  (registers the tasks)

    out = {}
    for name, task in app.tasks.items():
        if name.startswith("supervisor."):
            soft = task.soft_time_limit or app.conf.task_soft_time_limit
            hard = task.time_limit or app.conf.task_time_limit
            out[name] = (soft, hard)
    return out


def invariants() -> list[tuple[str, Callable[[], bool]]]:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    policy = Policy()
    limits = _step_time_limits()
    return [
        ("acks_late on", lambda: app.conf.task_acks_late is True),
        ("reject_on_worker_lost on", lambda: app.conf.task_reject_on_worker_lost is True),
        ("prefetch multiplier 1", lambda: app.conf.worker_prefetch_multiplier == 1),
        ("JSON only, no pickle", lambda: list(app.conf.accept_content) == ["json"]),
        (
            "result_extended off (no arguments in the result backend)",
            lambda: app.conf.result_extended is False,
        ),
        (
            "visibility timeout effective on broker and result backend alike",
            lambda: _effective_visibility() == (VISIBILITY_TIMEOUT_S, VISIBILITY_TIMEOUT_S),
        ),
        (
            "soft < hard time limit < visibility timeout",
            lambda: SOFT_TIME_LIMIT_S < TIME_LIMIT_S < VISIBILITY_TIMEOUT_S,
        ),
        (
            "every supervisor task's time limits below the visibility timeout",
            lambda: (
                bool(limits)
                and all(s and h and s < h < VISIBILITY_TIMEOUT_S for s, h in limits.values())
            ),
        ),
        (
            "hard time limit < lease TTL < visibility timeout (defaults)",
            lambda: TIME_LIMIT_S < defaults.lease_ttl_s < VISIBILITY_TIMEOUT_S,
        ),
        (
            "a redelivered step's wait for its twin < the soft time limit (default call_timeout)",
            lambda: policy.call_timeout + 5 < SOFT_TIME_LIMIT_S,
        ),
        (
            "verify delay (the only countdown) < visibility timeout (default)",
            lambda: defaults.verify_delay_s < VISIBILITY_TIMEOUT_S,
        ),
        (
            "no step countdown reaches the visibility timeout, whatever the verify delay",
            lambda: all(
                c is None or c < VISIBILITY_TIMEOUT_S
                for d in (0, 1, 3600, 10**6)
                for c in _countdowns_sent(d)
            ),
        ),
        (
            "every apply_async is a step enqueue, a page delivery or beat's own send; no eta",
            _only_known_sends,
        ),
        (
            "scan entries expire within their interval",
            lambda: all(v >= 1 for v in desired_entries(_fleet_of(["a", "b"])).values()),
        ),
        (
            "paging tick expires within its interval",
            lambda: (
                app.conf.beat_schedule["paging-tick"]["options"]["expires"]
                <= app.conf.beat_schedule["paging-tick"]["schedule"]
            ),
        ),
        (
            "beat lock outlives several beat loops (defaults)",
            lambda: defaults.beat_lock_timeout_s >= 3 * defaults.beat_max_loop_interval_s,
        ),
        ("step claims outlive any redelivery", lambda: DEFAULT_CLAIM_TTL_S > VISIBILITY_TIMEOUT_S),
        (
            "redelivery cap is finite and at least 1",
            lambda: 1 <= defaults.max_step_deliveries < 100,
        ),
        (
            "beat's Redis client retries past a restart",
            lambda: app_module.BEAT_REDIS_RETRY.get_retries() >= 10,
        ),
        ("no password in a Celery setting Celery does not mask", lambda: _no_unmasked_password()),
        (
            "backoff max far below the attempt counters' lifetime (7 days)",
            lambda: policy.backoff_max < 7 * 86400,
        ),
    ]


def _only_known_sends() -> bool:
    """Two enqueues of work (a step, a page delivery) in tasks.py, and beat's own sends of its
    due entries in schedule.py (the event switch around redbeat's send, and the batched tick);
    none with an eta (the step's short verify countdown is capped: the countdown invariant)."""
    calls = _apply_async_calls()
    where = sorted(c.split(":", 1)[0] for c in calls)
    known = where.count("tasks.py") == 2 and set(where) == {"tasks.py", "schedule.py"}
    return known and not any("eta" in c.split(" ", 1)[1].split(",") for c in calls)


def _fleet_of(names: list[str]) -> Any:
    from supervisor.fleet import Fleet

    return Fleet(
        path="x", defaults=Policy(), gateways=tuple(spec_for("ws://h/x", n) for n in names)
    )


def _no_unmasked_password() -> bool:
    made = app_module.make_app
    with mock.patch.object(app_module, "redis_url", lambda: "redis://:s3cr3t-pw@h:1/0"):
        conf = made().conf
    app.set_current()  # make_app's Celery() became the current app
    from celery.app.utils import filter_hidden_settings

    return "s3cr3t-pw" not in repr(filter_hidden_settings(conf.table(with_defaults=True)))


def static_invariants() -> Row:
    started = time.monotonic()
    row = Row("16. static configuration invariants")
    for name, check in invariants():
        row.runs += 1
        try:
            ok = bool(check())
        except Exception as exc:
            ok = False
            name += f" ({type(exc).__name__}: {exc})"
        row.survived += ok
        if not ok:
            row.problems.append(f"does not hold: {name}")
    row.notes.append(f"{row.runs} invariants (acks_late, prefetch 1, limits < visibility, ...)")
    row.seconds = time.monotonic() - started
    return row

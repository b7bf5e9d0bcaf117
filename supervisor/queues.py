"""The Celery queues and which task goes where (README, "Queue layout").

Three queues, so that a backlog of scans never delays a step and a slow paging provider holds
neither: `scan` (one scan per gateway per interval), `act` (recovery steps and escalations) and
`page` (deliveries and the paging tick). A module of its own, without Celery, so `up` and the
tests can name the queues without building the app.
"""

from __future__ import annotations

SCAN_QUEUE = "scan"
ACT_QUEUE = "act"
PAGE_QUEUE = "page"
QUEUES = (SCAN_QUEUE, ACT_QUEUE, PAGE_QUEUE)
#: where a task with no route goes: a step-like task is the safe guess
DEFAULT_QUEUE = ACT_QUEUE

TASK_ROUTES: dict[str, dict[str, str]] = {
    "supervisor.scan_gateway": {"queue": SCAN_QUEUE},
    "supervisor.abort_session": {"queue": ACT_QUEUE},
    "supervisor.reset_session": {"queue": ACT_QUEUE},
    "supervisor.verify_session": {"queue": ACT_QUEUE},
    "supervisor.redeliver_session": {"queue": ACT_QUEUE},
    "supervisor.escalate_session": {"queue": ACT_QUEUE},
    "supervisor.deliver_page": {"queue": PAGE_QUEUE},
    "supervisor.page_tick": {"queue": PAGE_QUEUE},
}

#: the tasks beat sends on a schedule; they send Celery task events (and so show in Flower) only
#: with SUPERVISOR_PERIODIC_EVENTS: at fleet scale their rows would push recoveries out of
#: Flower's memory (README, "Flower at fleet scale")
PERIODIC_TASKS = ("supervisor.scan_gateway", "supervisor.page_tick")

"""Every task has a queue, and `up` runs a consumer layout where steps and pages stand alone."""

from __future__ import annotations

from supervisor.app import app
from supervisor.queues import ACT_QUEUE, PAGE_QUEUE, QUEUES, SCAN_QUEUE, TASK_ROUTES
from supervisor.settings import Settings
from supervisor.up import child_commands


def test_every_task_is_routed_to_a_known_queue() -> None:
    import supervisor.tasks  # noqa: F401 - registers the tasks

    ours = {name for name in app.tasks if name.startswith("supervisor.")}
    assert ours == set(TASK_ROUTES), "route every new task deliberately (supervisor/queues.py)"
    for name in ours:
        assert app.amqp.router.route({}, name)["queue"].name == TASK_ROUTES[name]["queue"]
    assert TASK_ROUTES["supervisor.scan_gateway"]["queue"] == SCAN_QUEUE
    assert TASK_ROUTES["supervisor.deliver_page"]["queue"] == PAGE_QUEUE
    assert TASK_ROUTES["supervisor.reset_session"]["queue"] == ACT_QUEUE
    # a worker started without --queues (tests, benchmarks, old deployments) takes all three
    assert set(app.amqp.queues) == set(QUEUES)


def test_up_runs_a_dedicated_consumer_for_steps_and_for_pages() -> None:
    commands = child_commands(Settings(act_concurrency=3, page_concurrency=5))
    queues = {
        name: set(arg.removeprefix("--queues=").split(","))
        for name, argv in commands.items()
        for arg in argv
        if arg.startswith("--queues=")
    }
    # one consumer per queue: neither scans nor steps wait behind the other's backlog
    assert queues == {
        "worker": {SCAN_QUEUE},
        "act": {ACT_QUEUE},
        "page": {PAGE_QUEUE},
    }
    # scans and pages in threads (one process each, BENCHMARKS.md); steps in prefork
    # children, which a hard time limit can kill (README, queue layout)
    assert "--pool=threads" in commands["worker"] and "--pool=threads" in commands["page"]
    assert {"--pool=prefork", "--concurrency=3"} <= set(commands["act"])
    assert {"--pool=threads", "--concurrency=5"} <= set(commands["page"])


def test_each_consumer_chooses_its_pool() -> None:
    commands = child_commands(Settings(act_pool="threads", worker_pool="prefork"))
    assert {"--pool=threads", "--concurrency=2"} <= set(commands["act"])
    assert "--pool=prefork" in commands["worker"]
    assert "--pool=threads" in commands["page"]  # deliveries always wait in threads


def test_more_act_workers_are_more_consumers_of_the_act_queue_alone() -> None:
    commands = child_commands(Settings(act_workers=3))
    acts = [name for name, argv in commands.items() if "--queues=act" in argv]
    assert acts == ["act", "act-2", "act-3"]
    hostnames = {a for name in acts for a in commands[name] if a.startswith("--hostname=")}
    assert len(hostnames) == 3  # Celery tells them apart

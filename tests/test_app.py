"""The reliability settings of the Celery app, read from the app as a worker would load it."""

from __future__ import annotations

from supervisor.app import app
from supervisor.settings import Settings


def test_late_acks_prefetch_one_and_json_only() -> None:
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert conf.result_extended is False


def test_time_limits_and_delays_stay_under_the_visibility_timeout() -> None:
    conf = app.conf
    with app.connection_for_write() as conn:
        effective = conn.transport_options["visibility_timeout"]
    assert effective == conf.result_backend_transport_options["visibility_timeout"]
    assert conf.task_soft_time_limit < conf.task_time_limit < effective
    defaults = Settings()
    # the only countdown the engine uses is the verify delay; backoff lives in Redis
    assert defaults.verify_delay_s < effective
    # a lease outlives a whole attempt but not the redelivery of its steps
    assert conf.task_time_limit < defaults.lease_ttl_s < effective


def test_step_tasks_have_readable_names() -> None:
    import supervisor.tasks  # noqa: F401  (registers the tasks)

    names = set(app.tasks)
    assert {
        "supervisor.scan_gateway",
        "supervisor.abort_session",
        "supervisor.reset_session",
        "supervisor.verify_session",
        "supervisor.escalate_session",
    } <= names

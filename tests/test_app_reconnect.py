"""The worker survives a broker reconnect just after a pool child died (chaos row 26)."""

from __future__ import annotations

from celery.concurrency.asynpool import AsynPool
from kombu.asynchronous import Hub

import supervisor.app  # noqa: F401  (installs the guard, as every worker does)


class _DeadChild:
    """A pool process already reaped and untracked: Celery set its exit sentinel to None."""

    _sentinel_poll = None


def test_a_child_that_died_just_before_a_reconnect_is_not_watched() -> None:
    hub = Hub()
    try:
        pool = object.__new__(AsynPool)
        # celery 5.x would call hub.add_reader(None): ValueError, an unrecoverable error
        AsynPool._track_child_process(pool, _DeadChild(), hub)
        assert not hub.readers
    finally:
        hub.close()

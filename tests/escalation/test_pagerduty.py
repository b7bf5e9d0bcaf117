"""PagerDuty Events API v2 against a real loopback server: payloads, retries, Retry-After."""

from __future__ import annotations

import email.utils
import time

import pytest

from supervisor.errors import DeliveryRejected, DeliveryRetryable
from supervisor.escalation.config import PagerDutyProvider, PagingConfig
from supervisor.escalation.models import Action, DeliveryStatus
from supervisor.escalation.pagerduty import (
    ENQUEUE_PATH,
    PagerDutyNotifier,
    build_event,
    pagerduty_dedup_key,
)
from tests.support.paging import PD_KEY, Recorder, Reply, Sleeps, make_event


def notifier(config: PagingConfig, sleep: Sleeps | None = None, **kw: object) -> PagerDutyNotifier:
    provider = config.provider("pd")
    assert isinstance(provider, PagerDutyProvider)
    if kw:
        provider = provider.model_copy(update=kw)
    return PagerDutyNotifier(
        provider, external_url=config.external_url, sleep=sleep if sleep is not None else Sleeps()
    )


def test_trigger_and_resolve_pair(http: Recorder, full_config: PagingConfig) -> None:
    with notifier(full_config) as pd:
        opened = pd.send(make_event())
        closed = pd.send(make_event(action=Action.RESOLVE))
    assert opened.ok and closed.ok
    assert (opened.http_status, opened.requests) == (202, 1)
    trigger, resolve = (r.json() for r in http.to(ENQUEUE_PATH))
    assert trigger["dedup_key"] == resolve["dedup_key"] == "prod-1/agent:main:telegram:group:-100"
    assert trigger["routing_key"] == resolve["routing_key"] == PD_KEY
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert set(resolve) == {"routing_key", "event_action", "dedup_key"}
    payload = trigger["payload"]
    assert set(payload) == {
        "summary",
        "source",
        "severity",
        "timestamp",
        "component",
        "group",
        "class",
        "custom_details",
    }
    assert payload["source"] == "prod-1"
    assert payload["severity"] == "error"
    assert payload["class"] == "escalated"
    assert payload["timestamp"] == "2025-11-24T16:00:01.000Z"
    assert "still stuck after 3 recovery attempts" in payload["summary"]
    assert payload["custom_details"] == {
        "gateway": "prod-1",
        "key": "agent:main:telegram:group:-100",
        "age_s": 1500.0,
        "attempts": 3,
        "last_error": "sessions.reset: timeout",
        "story": "lane-supervisor audit -g prod-1 -k agent:main:telegram:group:-100",
    }
    assert trigger["client"] == "lane-supervisor"
    assert trigger["client_url"] == "https://ops.example.com/ls"
    headers = http.to(ENQUEUE_PATH)[0].headers
    assert headers["Content-Type"] == "application/json"


def test_acknowledge_has_no_payload() -> None:
    body = build_event(make_event(action=Action.ACKNOWLEDGE))
    assert body == {"event_action": "acknowledge", "dedup_key": make_event().dedup_key}


def test_long_dedup_keys_are_shortened_stably() -> None:
    long = "gw/" + "k" * 400
    short = pagerduty_dedup_key(long)
    assert len(short) == 255
    assert short == pagerduty_dedup_key(long)
    assert short != pagerduty_dedup_key(long + "x")
    assert pagerduty_dedup_key("gw/k") == "gw/k"


def test_503_is_retried_with_exponential_backoff(http: Recorder, full_config: PagingConfig) -> None:
    http.script(ENQUEUE_PATH, Reply(503), Reply(503), Reply(503))
    sleeps = Sleeps()
    result = notifier(full_config, sleeps).send(make_event())
    assert result.ok
    assert result.requests == 4
    assert len(http.to(ENQUEUE_PATH)) == 4
    assert sleeps == [1.0, 2.0, 4.0]  # base 1s, factor 2, jitter 0 in the test config


def test_503_until_tries_run_out_is_retryable(http: Recorder, full_config: PagingConfig) -> None:
    http.script(ENQUEUE_PATH, *[Reply(503, b"down")] * 4)
    sleeps = Sleeps()
    result = notifier(full_config, sleeps).send(make_event())
    assert result.status is DeliveryStatus.RETRYABLE
    assert (result.requests, result.http_status) == (4, 503)
    assert len(sleeps) == 3  # no sleep after the last try
    error = result.error()
    assert isinstance(error, DeliveryRetryable)
    assert str(error) == "provider 'pd': HTTP 503: down"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 504])
def test_transient_statuses_are_retried(
    http: Recorder, full_config: PagingConfig, status: int
) -> None:
    http.script(ENQUEUE_PATH, Reply(status))
    result = notifier(full_config).send(make_event())
    assert result.ok and result.requests == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 301])
def test_other_statuses_are_not_retried(
    http: Recorder, full_config: PagingConfig, status: int
) -> None:
    http.script(ENQUEUE_PATH, Reply(status, b'{"status":"invalid event"}'))
    sleeps = Sleeps()
    result = notifier(full_config, sleeps).send(make_event())
    assert result.status is DeliveryStatus.PERMANENT
    assert (result.requests, result.http_status, sleeps) == (1, status, [])
    assert len(http.to(ENQUEUE_PATH)) == 1
    assert isinstance(result.error(), DeliveryRejected)
    assert f"HTTP {status}" in (result.reason or "")


def test_429_honours_retry_after_seconds(http: Recorder, full_config: PagingConfig) -> None:
    http.script(ENQUEUE_PATH, Reply(429, headers={"Retry-After": "1"}))
    sleeps = Sleeps()
    result = notifier(full_config, sleeps).send(make_event())
    assert result.ok and result.requests == 2
    assert sleeps == [1.0]


def test_429_honours_retry_after_date(http: Recorder, full_config: PagingConfig) -> None:
    now = 1_800_000_000.0
    when = email.utils.formatdate(now + 7, usegmt=True)
    http.script(ENQUEUE_PATH, Reply(429, headers={"Retry-After": when}))
    sleeps = Sleeps()
    provider = full_config.provider("pd")
    assert isinstance(provider, PagerDutyProvider)
    pd = PagerDutyNotifier(provider, sleep=sleeps, wall_clock=lambda: now)
    assert pd.send(make_event()).ok
    assert sleeps == [7.0]


def test_429_waits_for_real(http: Recorder, full_config: PagingConfig) -> None:
    http.script(ENQUEUE_PATH, Reply(429, headers={"Retry-After": "1"}))
    provider = full_config.provider("pd")
    assert isinstance(provider, PagerDutyProvider)
    started = time.monotonic()
    assert PagerDutyNotifier(provider).send(make_event()).ok
    first, second = http.to(ENQUEUE_PATH)
    assert second.at - first.at >= 1.0
    assert time.monotonic() - started < 5


def test_a_retry_after_past_the_cap_is_left_to_the_caller(
    http: Recorder, full_config: PagingConfig
) -> None:
    http.script(ENQUEUE_PATH, Reply(429, headers={"Retry-After": "120"}))
    sleeps = Sleeps()
    result = notifier(full_config, sleeps).send(make_event())
    assert result.status is DeliveryStatus.RETRYABLE
    assert (result.requests, result.retry_after_s, sleeps) == (1, 120.0, [])


def test_network_errors_are_retried(full_config: PagingConfig) -> None:
    from tests.state.conftest import free_port

    sleeps = Sleeps()
    pd = notifier(full_config, sleeps, base_url=f"http://127.0.0.1:{free_port()}")
    result = pd.send(make_event())
    assert result.status is DeliveryStatus.RETRYABLE
    assert result.reason == "network error (ConnectError)"
    assert (result.requests, len(sleeps)) == (4, 3)

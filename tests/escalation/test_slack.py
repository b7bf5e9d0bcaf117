"""Slack: a short message, at most one per interval per webhook, 429 retried after Retry-After."""

from __future__ import annotations

import itertools
import threading
import time

from supervisor.escalation.config import PagingConfig, SlackProvider
from supervisor.escalation.models import Action
from supervisor.escalation.ratelimit import MinInterval, shared_limiter
from supervisor.escalation.slack import SlackNotifier, build_message
from tests.support.paging import FakeClock, Recorder, Reply, Sleeps, make_event, slack_path


def provider(config: PagingConfig, **changes: object) -> SlackProvider:
    chat = config.provider("chat")
    assert isinstance(chat, SlackProvider)
    return chat.model_copy(update=changes) if changes else chat


def test_message_is_short_and_escaped() -> None:
    text = build_message(make_event(details={"attempts": 3, "last_error": "a <b> & c"}))["text"]
    assert text.startswith(":large_orange_circle: *ERROR* Session agent:main:telegram")
    assert "a &lt;b&gt; &amp; c" in text
    assert "3 attempts" in text
    assert len(text) < 500
    resolved = build_message(make_event(action=Action.RESOLVE))["text"]
    assert resolved.startswith(":white_check_mark: *RESOLVED*")


def test_posts_to_the_webhook(http: Recorder, full_config: PagingConfig) -> None:
    chat = SlackNotifier(provider(full_config), limiter=MinInterval(0))
    assert chat.send(make_event()).ok
    (request,) = http.to(slack_path())
    assert set(request.json()) == {"text"}


def test_rate_limited_with_an_injected_clock(http: Recorder, full_config: PagingConfig) -> None:
    clock = FakeClock()
    limiter = MinInterval(1.0, clock=clock, sleep=clock.sleep)
    chat = SlackNotifier(provider(full_config, min_interval=1.0), limiter=limiter)
    start = clock.now
    for _ in range(3):
        assert chat.send(make_event()).ok
    assert clock.sleeps == [1.0, 1.0]
    assert clock.now - start >= 2.0
    assert len(http.to(slack_path())) == 3


def test_rate_limited_for_real_across_threads(http: Recorder, full_config: PagingConfig) -> None:
    interval = 0.25
    chat = SlackNotifier(provider(full_config, min_interval=interval))
    started = time.monotonic()
    threads = [threading.Thread(target=chat.send, args=(make_event(),)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started >= 2 * interval
    times = sorted(r.at for r in http.to(slack_path()))
    assert len(times) == 3
    assert all(b - a >= interval * 0.9 for a, b in itertools.pairwise(times))


def test_limiters_are_shared_per_webhook() -> None:
    assert shared_limiter("https://a", 1.0) is shared_limiter("https://a", 1.0)
    assert shared_limiter("https://a", 1.0) is not shared_limiter("https://b", 1.0)


def test_429_is_retried_after_retry_after(http: Recorder, full_config: PagingConfig) -> None:
    http.script(slack_path(), Reply(429, b"rate_limited", headers={"Retry-After": "1"}))
    sleeps = Sleeps()
    chat = SlackNotifier(provider(full_config), sleep=sleeps, limiter=MinInterval(0))
    result = chat.send(make_event())
    assert result.ok and result.requests == 2
    assert sleeps == [1.0]


def test_bad_webhook_is_permanent(http: Recorder, full_config: PagingConfig) -> None:
    http.script(slack_path(), Reply(404, b"no_service"))
    chat = SlackNotifier(provider(full_config), sleep=Sleeps(), limiter=MinInterval(0))
    result = chat.send(make_event())
    assert not result.ok and not result.retryable
    assert result.reason == "HTTP 404: no_service"

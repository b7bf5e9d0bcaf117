"""Canary secrets never reach logs, results, errors, reprs or Redis, whatever goes wrong."""

from __future__ import annotations

import logging

import pytest

from supervisor.escalation.base import Notifier
from supervisor.escalation.config import PagingConfig, SlackProvider, WebhookProvider
from supervisor.escalation.dispatch import deliver
from supervisor.escalation.models import DeliveryResult
from supervisor.escalation.pager import ProviderPager
from supervisor.escalation.pagerduty import ENQUEUE_PATH
from supervisor.escalation.slack import SlackNotifier
from supervisor.escalation.webhook import WebhookNotifier
from supervisor.state import StateStore
from tests.state.conftest import free_port
from tests.support.paging import (
    CANARIES,
    HMAC_SECRET,
    PD_KEY,
    SLACK_SECRET,
    Recorder,
    Reply,
    Sleeps,
    make_event,
    slack_path,
)


def clean(*texts: object) -> bool:
    return not any(c in str(t) for t in texts for c in CANARIES)


def checked(result: DeliveryResult) -> DeliveryResult:
    assert clean(result.model_dump_json(), repr(result), result.error())
    return result


def test_slack_url_is_masked_in_httpx_logs(
    http: Recorder, full_config: PagingConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    chat = full_config.provider("chat")
    assert isinstance(chat, SlackProvider)
    checked(SlackNotifier(chat).send(make_event()))
    assert "HTTP Request: POST" in caplog.text  # httpx did log the request...
    assert "HTTP Request: POST ***" in caplog.text  # ...with the URL (the secret) masked
    assert clean(caplog.text)


def test_echoed_secrets_are_masked_in_reasons(
    http: Recorder, full_config: PagingConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http.script(ENQUEUE_PATH, Reply(400, echo=True))
    refused = checked(deliver("pd", make_event(), full_config))
    assert not refused.ok and "***" in (refused.reason or "")
    http.script("/hook", *[Reply(503, echo=True)] * 4)
    provider = full_config.provider("hook")
    assert isinstance(provider, WebhookProvider)
    failed = checked(WebhookNotifier(provider, sleep=Sleeps()).send(make_event()))
    assert failed.retryable
    http.script(slack_path(), Reply(403, echo=True))
    checked(deliver("chat", make_event(), full_config))
    assert clean(caplog.text)


def test_network_errors_and_crashes_stay_clean(
    full_config: PagingConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dead = f"http://127.0.0.1:{free_port()}/services/T/B/{SLACK_SECRET}"
    chat = full_config.provider("chat")
    assert isinstance(chat, SlackProvider)
    broken = chat.model_copy(update={"webhook_url": type(chat.webhook_url)(dead)})
    checked(SlackNotifier(broken, sleep=Sleeps()).send(make_event()))

    def crash(name: str, config: PagingConfig) -> Notifier:
        raise RuntimeError(f"cannot use {PD_KEY} with {chat.webhook_url.get_secret_value()}")

    checked(deliver("pd", make_event(), full_config, factory=crash))
    assert "RuntimeError" in caplog.text
    assert clean(caplog.text)


def test_nothing_secret_lands_in_redis(
    http: Recorder,
    full_config: PagingConfig,
    store: StateStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    http.script(ENQUEUE_PATH, Reply(400, echo=True))
    http.script("/hook", *[Reply(500, echo=True)] * 4)
    pager = ProviderPager(full_config, store, factory=_fast)
    pager.trigger("prod-1/k", gateway="prod-1", key="k", kind="escalated", details={})
    client = store.client
    stored = [
        client.hgetall(k) if client.type(k) == "hash" else client.zrange(k, 0, -1)
        for k in client.scan_iter(match=store.keys.all_keys())
    ]
    assert stored and clean(stored)
    (incident,) = store.incidents.list_open()
    assert incident.deliveries["pd"].state == "failed"
    assert incident.deliveries["hook"].state == "retry"
    assert clean(caplog.text, incident.model_dump_json(), repr(pager.config))


def _fast(name: str, config: PagingConfig) -> Notifier:
    from supervisor.escalation.dispatch import build_notifier

    return build_notifier(name, config, sleep=Sleeps())


def test_config_reprs_hold_no_secret(full_config: PagingConfig) -> None:
    assert clean(repr(full_config), str(full_config), full_config.model_dump())
    assert clean(*(repr(p) for p in full_config.providers.values()))
    assert HMAC_SECRET not in repr(full_config.provider("hook"))

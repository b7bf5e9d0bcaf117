"""The Pager the engine calls: Redis state first, then one delivery per provider."""

from __future__ import annotations

import inspect

import pytest

from supervisor.escalation.base import Notifier, RecordingNotifier
from supervisor.escalation.config import PagingConfig
from supervisor.escalation.models import Action, DeliveryStatus
from supervisor.escalation.pager import Delivery, ProviderPager
from supervisor.escalation.pagerduty import ENQUEUE_PATH
from supervisor.state import StateStore
from tests.support.paging import T0, Recorder, load, slack_path

pytestmark = pytest.mark.integration

CONFIG = load(
    """
[paging.providers.a]
type = "slack"
webhook_url_env = "U"
[paging.providers.b]
type = "slack"
webhook_url_env = "U"
[[paging.routes]]
name = "prod"
match = { labels = { env = "prod" } }
providers = ["a", "b"]
[paging.default_route]
providers = ["a"]
""",
    {"U": "https://hooks.slack.com/services/x"},
)
KEY = "agent:main:main"
DEDUP = f"prod-1/{KEY}"


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> float:
        return self.ms / 1000


class Rig:
    def __init__(self, store: StateStore, config: PagingConfig = CONFIG, **kw: object) -> None:
        self.clock = Clock()
        self.stubs: dict[str, RecordingNotifier] = {}
        self.pager = ProviderPager(
            config,
            store,
            labels_for=lambda gw: {"env": "prod"} if gw.startswith("prod") else {},
            factory=self.factory,
            clock=self.clock,
            **kw,  # type: ignore[arg-type]
        )

    def factory(self, name: str, config: PagingConfig) -> Notifier:
        return self.stubs.setdefault(name, RecordingNotifier(name))

    def script(self, name: str, *statuses: DeliveryStatus) -> None:
        self.stubs[name] = RecordingNotifier(name, statuses)

    def sent(self, name: str) -> list[tuple[Action, int]]:
        stub = self.stubs.get(name)
        return [] if stub is None else [(e.action, e.seq) for e in stub.sent]

    def escalate(
        self, gateway: str = "prod-1", key: str | None = KEY, kind: str = "escalated"
    ) -> None:
        dedup = gateway if key is None else f"{gateway}/{key}"
        self.pager.trigger(
            dedup,
            gateway=gateway,
            key=key,
            kind=kind,
            details={"attempts": 3, "last_error": "timeout", "age_s": 1500},
        )


@pytest.mark.parametrize("name", ["trigger", "resolve", "silenced", "run", "tick"])
def test_matches_the_engines_protocol(name: str) -> None:
    protocol = pytest.importorskip("supervisor.recovery.pager")
    theirs = inspect.signature(getattr(protocol.Pager, name))
    for impl in (ProviderPager, protocol.AuditOnlyPager):
        ours = inspect.signature(getattr(impl, name))
        assert list(ours.parameters) == list(theirs.parameters)


def test_trigger_and_resolve(store: StateStore) -> None:
    rig = Rig(store)
    rig.escalate()
    rig.escalate()  # quiet: already open
    assert rig.sent("a") == rig.sent("b") == [(Action.TRIGGER, 1)]
    event = rig.stubs["a"].sent[0]
    assert (event.severity, event.labels, event.attempts) == ("error", {"env": "prod"}, 3)
    (incident,) = store.incidents.list_open()
    assert incident.delivered("a") and incident.delivered("b")
    rig.clock.ms += 60_000
    rig.pager.resolve(DEDUP, gateway="prod-1", key=KEY)
    rig.pager.resolve(DEDUP, gateway="prod-1", key=KEY)  # only once
    assert rig.sent("a") == rig.sent("b") == [(Action.TRIGGER, 1), (Action.RESOLVE, 2)]
    assert store.incidents.get(DEDUP) is None  # the resolve reached everyone: nothing left


def test_a_failed_provider_is_retried_alone(store: StateStore) -> None:
    rig = Rig(store, redelivery_base_s=30)
    rig.script("b", DeliveryStatus.RETRYABLE)
    rig.escalate()
    assert rig.pager.tick() == []  # b's backoff has not passed
    rig.clock.ms += 31_000
    assert rig.pager.tick() == [Delivery(dedup_key=DEDUP, provider="b", seq=1)]
    assert rig.sent("a") == [(Action.TRIGGER, 1)]
    assert rig.sent("b") == [(Action.TRIGGER, 1), (Action.TRIGGER, 1)]
    assert rig.pager.tick() == []


def test_gives_up_after_max_deliveries(store: StateStore) -> None:
    rig = Rig(store, max_deliveries=2, redelivery_base_s=1)
    rig.script("b", DeliveryStatus.RETRYABLE, DeliveryStatus.RETRYABLE, DeliveryStatus.RETRYABLE)
    rig.escalate()
    rig.clock.ms += 10_000
    rig.pager.tick()
    rig.clock.ms += 10_000
    assert rig.pager.tick() == []
    assert len(rig.sent("b")) == 2
    incident = store.incidents.get(DEDUP)
    assert incident is not None and incident.deliveries["b"].state == "failed"


def test_renotify_on_tick(store: StateStore) -> None:
    rig = Rig(store)
    rig.escalate()
    rig.clock.ms += 4 * 3600 * 1000
    submitted = rig.pager.tick()
    assert {(d.provider, d.seq) for d in submitted} == {("a", 2), ("b", 2)}
    assert rig.sent("a") == [(Action.TRIGGER, 1), (Action.TRIGGER, 2)]


def test_silenced_incidents_are_not_sent(store: StateStore) -> None:
    rig = Rig(store)
    store.silences.silence("prod-1", 60, "maintenance")
    rig.escalate()
    assert rig.stubs == {} and store.incidents.list_open() == []
    rig.pager.resolve(DEDUP, gateway="prod-1", key=KEY)
    assert rig.stubs == {}


def test_gateway_failures_page_as_unreachable(store: StateStore) -> None:
    rig = Rig(store)
    rig.escalate("prod-2", None, kind="timeout")
    (event,) = rig.stubs["a"].sent
    assert (event.kind, event.severity, event.details["error_kind"]) == (
        "unreachable",
        "critical",
        "timeout",
    )


def test_deliveries_can_go_through_a_queue(store: StateStore) -> None:
    queued: list[Delivery] = []
    rig = Rig(store, submit=queued.append)
    rig.escalate()
    assert [d.as_task_kwargs() for d in queued] == [
        {"dedup_key": DEDUP, "provider": "a", "seq": 1},
        {"dedup_key": DEDUP, "provider": "b", "seq": 1},
    ]
    assert rig.pager.run(queued[0]) is not None
    assert rig.pager.run(queued[0]) is None  # a redelivered task finds it done
    assert rig.sent("a") == [(Action.TRIGGER, 1)]


def test_acknowledge_goes_to_every_target(store: StateStore) -> None:
    rig = Rig(store)
    rig.escalate()
    results = rig.pager.acknowledge(DEDUP)
    assert [r.provider for r in results] == ["a", "b"]
    assert rig.sent("a")[-1] == (Action.ACKNOWLEDGE, 1)


def test_end_to_end_over_http(store: StateStore, http: Recorder, full_config: PagingConfig) -> None:
    pager = ProviderPager(full_config, store, labels_for=lambda gw: {})
    pager.trigger(DEDUP, gateway="prod-1", key=KEY, kind="escalated", details={"attempts": 3})
    pager.trigger("dev-1", gateway="dev-1", key=None, kind="breaker_open", details={})
    pager.resolve(DEDUP, gateway="prod-1", key=KEY)
    pd = [r.json() for r in http.to(ENQUEUE_PATH)]
    assert [(b["event_action"], b["dedup_key"]) for b in pd] == [
        ("trigger", DEDUP),
        ("resolve", DEDUP),
    ]
    assert [r.json()["status"] for r in http.to("/hook")] == ["firing", "resolved"]
    assert len(http.to(slack_path())) == 3  # prod trigger, dev-1 (default route), prod resolve
    assert [i.dedup_key for i in store.incidents.list_open()] == ["dev-1"]

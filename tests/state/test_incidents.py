"""Incident lifecycle against a real valkey-server: atomic open, re-notify, resolve, deliveries."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from supervisor.escalation.models import Action, DeliveryResult, DeliveryStatus
from supervisor.escalation.pager import event_of
from supervisor.state.incidents import Incident, Incidents, OpenDecision
from tests.support.paging import T0, make_event

pytestmark = pytest.mark.integration

DEDUP = make_event().dedup_key
HOUR_S = 3600.0


def opened(
    incidents: Incidents, now_ms: int = T0, providers: tuple[str, ...] = ("a", "b"), **kw: Any
) -> OpenDecision:
    return incidents.open_or_renotify(
        make_event(**kw), providers=providers, renotify_after_s=4 * HOUR_S, now_ms=now_ms
    )


def result(
    provider: str, status: DeliveryStatus, action: Action = Action.TRIGGER
) -> DeliveryResult:
    return DeliveryResult(provider=provider, status=status, action=action, dedup_key=DEDUP)


def race(n: int, call: Callable[[], object]) -> list[object]:
    barrier = threading.Barrier(n)
    out: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        out[i] = call()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_first_open_sends_then_quiet(incidents: Incidents) -> None:
    first = opened(incidents)
    assert (first.send, first.seq, first.why) == (True, 1, "new")
    again = opened(incidents, T0 + 60_000, details={"age_s": 1560, "attempts": 3})
    assert (again.send, again.seq, again.why) == (False, 1, "quiet")
    incident = incidents.get(DEDUP)
    assert incident is not None
    assert (incident.status, incident.gateway, incident.key) == ("open", "prod-1", make_event().key)
    assert (incident.kind, incident.severity, incident.labels) == (
        "escalated",
        "error",
        {"env": "prod"},
    )
    assert incident.details["age_s"] == 1560  # refreshed by the quiet call
    assert (incident.opened_ms, incident.notified_ms, incident.last_seen_ms) == (
        T0,
        T0,
        T0 + 60_000,
    )
    assert incident.providers == incident.targets == ("a", "b")
    assert event_of(incident).action is Action.TRIGGER
    assert event_of(incident).started_ms == T0


def test_racing_workers_send_exactly_one_trigger(incidents: Incidents) -> None:
    decisions = race(20, lambda: opened(incidents))
    assert sum(1 for d in decisions if isinstance(d, OpenDecision) and d.send) == 1


def test_renotify_after_the_interval(incidents: Incidents) -> None:
    opened(incidents)
    assert not opened(incidents, T0 + int(4 * HOUR_S * 1000) - 1).send
    due = opened(incidents, T0 + int(4 * HOUR_S * 1000), providers=("a", "c"))
    assert (due.send, due.seq, due.why) == (True, 2, "renotify")
    incident = incidents.get(DEDUP)
    assert incident is not None
    assert incident.providers == ("a", "c")
    assert incident.targets == ("a", "b", "c")  # the resolve goes to everyone ever triggered
    assert not opened(incidents, T0 + int(5 * HOUR_S * 1000)).send


def test_renotify_zero_means_never(incidents: Incidents) -> None:
    event = make_event()
    assert incidents.open_or_renotify(event, providers=(), renotify_after_s=0, now_ms=T0).send
    later = incidents.open_or_renotify(event, providers=(), renotify_after_s=0, now_ms=T0 + 10**9)
    assert not later.send


def test_more_severe_renotifies_at_once_less_severe_does_not(incidents: Incidents) -> None:
    assert opened(incidents, kind="stuck", severity="warning").send
    worse = opened(incidents, T0 + 1000, kind="escalated", severity="error")
    assert (worse.send, worse.seq, worse.why) == (True, 2, "escalated")
    assert not opened(incidents, T0 + 2000, kind="stuck", severity="warning").send
    incident = incidents.get(DEDUP)
    assert incident is not None
    assert (incident.kind, incident.severity) == ("escalated", "error")


def test_resolve_exactly_once(incidents: Incidents) -> None:
    opened(incidents)
    winners = [r for r in race(20, lambda: incidents.resolve(DEDUP, now_ms=T0 + 5000)) if r]
    assert len(winners) == 1
    incident = winners[0]
    assert isinstance(incident, Incident)
    assert (incident.status, incident.seq, incident.resolved_ms) == ("resolved", 2, T0 + 5000)
    assert incident.providers == ("a", "b")
    assert event_of(incident).action is Action.RESOLVE
    assert event_of(incident).ts_ms == T0 + 5000
    assert incidents.resolve(DEDUP) is None
    assert incidents.list_open() == []
    assert [i.dedup_key for i in incidents.list_resolving()] == [DEDUP]


def test_resolve_of_nothing_and_without_providers(incidents: Incidents) -> None:
    assert incidents.resolve("nobody/nothing") is None
    opened(incidents, providers=())
    closed = incidents.resolve(DEDUP)
    assert closed is not None and closed.providers == ()
    assert incidents.get(DEDUP) is None  # nobody to tell: gone at once


def test_reopen_after_resolve_starts_a_new_incident(incidents: Incidents) -> None:
    opened(incidents)
    incidents.resolve(DEDUP, now_ms=T0 + 1000)
    again = opened(incidents, T0 + 2000)
    assert (again.send, again.seq, again.why) == (True, 1, "new")
    assert incidents.list_resolving() == []


def test_delivery_state_per_provider(incidents: Incidents) -> None:
    opened(incidents)
    assert incidents.claim_delivery(DEDUP, "a", 1, owner="w1", lease_ms=10_000, now_ms=T0) == "ok"
    assert incidents.claim_delivery(DEDUP, "a", 1, owner="w2", lease_ms=10_000, now_ms=T0) == "busy"
    assert incidents.claim_delivery(DEDUP, "zzz", 1, owner="w", lease_ms=1, now_ms=T0) == "stale"
    assert incidents.claim_delivery(DEDUP, "a", 7, owner="w", lease_ms=1, now_ms=T0) == "stale"
    assert incidents.record_delivery(result("a", DeliveryStatus.OK), 1, owner="w1", now_ms=T0) == 1
    assert incidents.claim_delivery(DEDUP, "a", 1, owner="w3", lease_ms=1, now_ms=T0) == "done"
    assert incidents.claim_delivery(DEDUP, "b", 1, owner="w4", lease_ms=10_000, now_ms=T0) == "ok"
    failed = result("b", DeliveryStatus.RETRYABLE)
    assert incidents.record_delivery(failed, 1, owner="w4", not_before_ms=T0 + 30_000) == 1
    assert incidents.claim_delivery(DEDUP, "b", 1, owner="w5", lease_ms=1, now_ms=T0) == "wait"
    incident = incidents.get(DEDUP)
    assert incident is not None
    assert incident.delivered("a") and not incident.delivered("b")
    assert incident.deliveries["b"].tries == 1
    assert incident.leases == {}
    assert incident.pending(T0 + 29_999) == ()
    assert incident.pending(T0 + 30_000) == ("b",)
    assert [(i.dedup_key, p) for i, p in incidents.due_deliveries(now_ms=T0 + 30_000)] == [
        (DEDUP, "b")
    ]
    assert (
        incidents.claim_delivery(DEDUP, "b", 1, owner="w6", lease_ms=1, now_ms=T0 + 30_000) == "ok"
    )


def test_never_tried_deliveries_are_due_after_a_grace(incidents: Incidents) -> None:
    opened(incidents)
    assert incidents.due_deliveries(now_ms=T0 + 1000, grace_ms=60_000) == []
    due = incidents.due_deliveries(now_ms=T0 + 60_000, grace_ms=60_000)
    assert sorted(p for _, p in due) == ["a", "b"]


def test_a_stale_delivery_is_not_recorded(incidents: Incidents) -> None:
    opened(incidents)
    assert incidents.claim_delivery(DEDUP, "a", 1, owner="old", lease_ms=60_000, now_ms=T0) == "ok"
    opened(incidents, T0 + int(4 * HOUR_S * 1000))  # seq 2 now
    assert incidents.record_delivery(result("a", DeliveryStatus.OK), 1, owner="old") == 0
    incident = incidents.get(DEDUP)
    assert incident is not None
    assert "a" not in incident.deliveries and incident.leases == {}  # lease released anyway


def test_resolve_waits_for_a_trigger_in_flight(incidents: Incidents) -> None:
    opened(incidents)
    assert incidents.claim_delivery(DEDUP, "a", 1, owner="t", lease_ms=60_000, now_ms=T0) == "ok"
    closed = incidents.resolve(DEDUP, now_ms=T0 + 1)
    assert closed is not None
    assert incidents.claim_delivery(DEDUP, "a", 2, owner="r", lease_ms=1, now_ms=T0 + 2) == "busy"
    incidents.record_delivery(result("a", DeliveryStatus.OK), 1, owner="t")
    assert incidents.claim_delivery(DEDUP, "a", 2, owner="r", lease_ms=1, now_ms=T0 + 3) == "ok"


def test_resolve_completes_when_every_provider_is_told(incidents: Incidents) -> None:
    opened(incidents)
    closed = incidents.resolve(DEDUP, now_ms=T0 + 1)
    assert closed is not None and closed.seq == 2
    ok_a = result("a", DeliveryStatus.OK, Action.RESOLVE)
    retry_b = result("b", DeliveryStatus.RETRYABLE, Action.RESOLVE)
    assert incidents.record_delivery(ok_a, 2) == 1
    assert incidents.record_delivery(retry_b, 2, not_before_ms=T0 + 100) == 1
    assert incidents.get(DEDUP) is not None
    refused_b = result("b", DeliveryStatus.PERMANENT, Action.RESOLVE)
    assert incidents.record_delivery(refused_b, 2) == 2
    assert incidents.get(DEDUP) is None
    assert incidents.list_resolving() == []


def test_list_open_sorted_filtered_and_self_cleaning(incidents: Incidents) -> None:
    incidents.open_or_renotify(
        make_event(
            dedup_key="gw-b", gateway="gw-b", key=None, kind="unreachable", severity="critical"
        ),
        providers=(),
        renotify_after_s=0,
        now_ms=T0 + 10,
    )
    opened(incidents)
    assert [i.dedup_key for i in incidents.list_open()] == [DEDUP, "gw-b"]
    assert [i.dedup_key for i in incidents.list_open("gw-b")] == ["gw-b"]
    # a hash that expired (TTL) leaves its index entry behind until the next listing
    incidents._client.delete(incidents._keys.incident("gw-b"))
    assert [i.dedup_key for i in incidents.list_open()] == [DEDUP]
    assert incidents._client.zcard(incidents._keys.incidents_open) == 1


def test_incidents_expire_when_nobody_mentions_them(incidents: Incidents) -> None:
    short = Incidents(incidents._client, incidents._keys, open_ttl_s=1)
    opened(short)
    assert 0 < incidents._client.ttl(incidents._keys.incident(DEDUP)) <= 1
    assert short.touch(DEDUP)


def test_severity_is_required(incidents: Incidents) -> None:
    with pytest.raises(ValueError, match="severity"):
        incidents.open_or_renotify(make_event(severity=None), providers=(), renotify_after_s=1)

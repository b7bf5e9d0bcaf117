"""The key layout as written, on fakeredis: every key the state parts write is one that
`state/keys.py` documents, with the expiry it documents.

These are facts about our own commands, so an in-process fake serves (microseconds, no server);
what a real server keeps across restarts, evicts or serialises is tested on valkey elsewhere
(test_store.py, test_leases.py, test_attempts.py, test_audit.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import fakeredis
import pytest

import supervisor.state.keys as keys_module
from supervisor.escalation.models import Action, DeliveryResult, DeliveryStatus, IncidentEvent
from supervisor.state import AuditRecord, StateStore
from supervisor.state.attempts import DEFAULT_COUNTER_TTL_S
from supervisor.state.episodes import DEFAULT_CLAIM_TTL_S, OpenEpisode
from supervisor.state.held import MIN_TTL_S as HELD_MIN_TTL_S
from supervisor.state.held import DroppedSummary, HeldMessage
from supervisor.state.incidents import DEFAULT_OPEN_TTL_S, DEFAULT_RESOLVED_TTL_S

GW, KEY, SID = "gw-1", "agent:main:telegram:group:-100", "sid-1"
LEASE_TTL_MS = 30_000
SILENCE_S = 600
HEAL_WINDOW_S = 2 * 3600


@pytest.fixture
def fake() -> Iterator[StateStore]:
    # fakeredis has no INFO replication and no replicas: nothing to WAIT for
    store = StateStore(fakeredis.FakeRedis(decode_responses=True), prefix="ls:", wait_replicas=0)
    yield store
    store.close()


def documented() -> dict[str, str]:
    """Kind id ("lease", "incidents:open", ...) -> the text of its entry in the docstring."""
    doc = keys_module.__doc__ or ""
    entries: dict[str, str] = {}
    current = None
    for line in doc.splitlines():
        start = re.match(r"^    ls:(\S+)(.*)$", line)
        if start:
            literal = [p for p in start.group(1).split(":") if not p.startswith("<")]
            current = ":".join(literal).split("[")[0]
            entries[current] = entries.get(current, "") + " " + start.group(2)
        elif current is not None and line.startswith(" " * 40):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def kind_of(store: StateStore, redis_key: str) -> str:
    kind, *parts = store.keys.parse(redis_key)
    return f"{kind}:{parts[0]}" if kind == "incidents" else kind


def write_everything(store: StateStore) -> None:
    """One of every write the supervisor makes."""
    now = 1_764_000_000_000
    assert store.leases.acquire(GW, KEY, "worker-1", LEASE_TTL_MS) is not None
    store.attempts.record_attempt(GW, KEY, SID, now_ms=now, next_not_before_ms=now, error="x")
    assert store.attempts.mark_escalated(GW, KEY, SID, now_ms=now, reason="3 attempts")
    store.audit.append(AuditRecord(ts_ms=now, gateway=GW, step="scan", outcome="ok"))
    store.episodes.open(GW, KEY, OpenEpisode(session_id=SID, verdict="zombie", since_ms=now))
    assert store.episodes.claim_step("rec-1", "abort", "worker-1").state == "new"
    store.episodes.finish_step("rec-1", "abort", "aborted")
    assert store.episodes.count_delivery("task-1") == 1
    store.episodes.update_gateway(GW, last_scan_ms=now, breaker_open=False)
    assert store.episodes.raise_flag("redis_not_durable")
    store.budgets.record_heal(GW, KEY, "rec-1", now_ms=now, window_s=HEAL_WINDOW_S)
    assert store.budgets.mark_flapping(GW, KEY, ttl_s=HEAL_WINDOW_S)
    assert store.budgets.mark_gateway_over(GW)
    for dedup, key in ((f"{GW}/{KEY}", KEY), ("gw-2", None)):
        event = IncidentEvent(
            dedup_key=dedup, gateway=dedup.split("/")[0], key=key, kind="escalated",
            severity="error", started_ms=now, ts_ms=now,
        )  # fmt: skip
        assert store.incidents.open_or_renotify(event, providers=["pd"], renotify_after_s=0).send
    resolved = store.incidents.resolve("gw-2")
    assert resolved is not None
    result = DeliveryResult(
        provider="pd", status=DeliveryStatus.RETRYABLE, action=Action.RESOLVE, dedup_key="gw-2"
    )
    assert store.incidents.record_delivery(result, resolved.seq) == 1  # still resolving
    store.silences.silence(GW, SILENCE_S, "maintenance")
    store.silences.silence(f"{GW}/{KEY}", SILENCE_S, "known bug")
    store.held.record("rec-1", [HeldMessage(run_id="run-1", sent_at_ms=now)], ttl_s=3600)
    summary = DroppedSummary(key=KEY, recovery_id="rec-1", dropped=1)
    store.held.note_closed(GW, summary, now_ms=now)


def expected_ttl_ms(store: StateStore, redis_key: str) -> int | None:
    """None: the key must not expire."""
    kind = kind_of(store, redis_key)
    if kind == "flapping" and len(store.keys.parse(redis_key)) == 2:
        return 3600 * 1000  # the gateway's marker: one hour
    if kind == "incident":
        status = store.client.hget(redis_key, "status")
        return (DEFAULT_OPEN_TTL_S if status == "open" else DEFAULT_RESOLVED_TTL_S) * 1000
    return {
        "lease": LEASE_TTL_MS,
        "attempts": DEFAULT_COUNTER_TTL_S * 1000,
        "escalated": DEFAULT_COUNTER_TTL_S * 1000,
        "step": DEFAULT_CLAIM_TTL_S * 1000,
        "silence": SILENCE_S * 1000,
        "heals": HEAL_WINDOW_S * 1000,
        "flapping": HEAL_WINDOW_S * 1000,
        "held": HELD_MIN_TTL_S * 1000,
        "dropped": HELD_MIN_TTL_S * 1000,
    }.get(kind)


def test_every_key_written_is_documented_and_every_documented_key_is_written(
    fake: StateStore,
) -> None:
    write_everything(fake)
    written = {kind_of(fake, k) for k in fake.client.scan_iter(match=fake.keys.all_keys())}
    assert written == set(documented())


def test_every_key_expires_as_documented(fake: StateStore) -> None:
    write_everything(fake)
    docs = documented()
    for redis_key in fake.client.scan_iter(match=fake.keys.all_keys()):
        want = expected_ttl_ms(fake, redis_key)
        got = int(fake.client.pttl(redis_key))
        entry = docs[kind_of(fake, redis_key)]
        if want is None:
            assert got == -1, redis_key
            assert "no TTL" in entry, redis_key
        else:
            assert want - 5_000 <= got <= want, (redis_key, got, want)
            assert "EX" in entry or "PX" in entry, redis_key


def test_patterns_match_their_keys_only(fake: StateStore) -> None:
    write_everything(fake)
    other = StateStore(fake.client, prefix="ls2:", wait_replicas=0)
    write_everything(other)
    found = list(fake.client.scan_iter(match=fake.keys.silences()))
    assert sorted(found) == sorted([fake.keys.silence(GW), fake.keys.silence(GW, KEY)])
    assert fake.episodes.gateways_known() == [GW]
    assert all(k.startswith("ls:") for k in fake.client.scan_iter(match=fake.keys.all_keys()))

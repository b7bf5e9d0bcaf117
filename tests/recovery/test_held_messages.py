"""The messages a reset of a held lane drops: recorded first, then reported or sent again once.

Against the simulator's 2026.9.6 line (its `chat.history` lists `pendingInputs` as the real
one does, `queued` then `interrupted` after a reset; a second send with one idempotency key
runs nothing, as measured) and a real Redis.
"""

from __future__ import annotations

from typing import Any

from supervisor.core.attempt import AttemptRef
from supervisor.core.ladder import Step
from supervisor.recovery.held import idempotency_key
from supervisor.recovery.runtime import run_ladder
from supervisor.recovery.steps import Steps
from supervisor.simulator import SimGateway
from supervisor.status import gateway_status
from tests.recovery.conftest import Rig

KEY = "agent:main:z"
TEXTS = ("hello? anyone?", "second: still there?")


def outcomes(actions: list[Any]) -> list[tuple[str | None, str, str]]:
    return [(a.key, a.step, a.outcome) for a in actions if a.key]


def held(rig: Rig, texts: tuple[str, ...] = TEXTS) -> SimGateway:
    gw = rig.gateway("gw", "2026.9.6")
    gw.add_zombie(KEY)
    for text in texts:
        rig.sim.call(gw.handle, "sessions.send", {"key": KEY, "message": text}, ["operator.write"])
    assert len(gw.sessions[KEY].held_runs) == len(texts)
    return gw


def resent(gw: SimGateway) -> list[dict[str, Any]]:
    """Every send of ours after the users' own (they carry no idempotency key)."""
    return [
        m.params for m in gw.mutations
        if m.method == "sessions.send" and "idempotencyKey" in m.params
    ]  # fmt: skip


def test_report_records_the_dropped_messages_and_pages_once(rig: Rig) -> None:
    gw = held(rig)
    runs = tuple(gw.sessions[KEY].held_runs)
    actions = run_ladder(rig.engine('held_after = "0s"\n'), "gw")
    assert outcomes(actions) == [(KEY, "reset", "reset"), (KEY, "verify", "healed")]
    reset = actions[[a.step for a in actions].index("reset")]
    assert "dropped 2 message(s)" in reset.detail and "waiting since 20" in reset.detail
    assert [d.run_id for d in gw.dropped_messages] == list(runs)  # the gateway did drop them
    assert resent(gw) == []  # report only: nothing sent again
    pages = [k for _, k in rig.pager.triggers if k == "messages_dropped"]
    assert pages == ["messages_dropped"]
    # what Redis keeps: run ids and when, never the users' words
    recovery_id = reset.recovery_id
    assert recovery_id is not None
    records = rig.store.held.load(recovery_id)
    assert records is not None and [r.run_id for r in records] == list(runs)
    assert all(r.text is None and r.sent_at_ms for r in records)
    (status,) = gateway_status(rig.store, ["gw"])
    assert (status["messages_dropped_24h"], status["messages_redelivered_24h"]) == (2, 0)
    assert status["messages_dropped"][0]["key"] == KEY
    assert status["messages_dropped"][0]["since_ms"] == records[0].sent_at_ms
    for text in TEXTS:
        assert all(text not in str(v) for v in rig.store.client.mget(
            list(rig.store.client.scan_iter(match=rig.store.keys.all_keys()))
        ) if v is not None and not str(v).startswith("{"))  # fmt: skip


def test_redeliver_sends_each_dropped_message_again_once_in_order(rig: Rig) -> None:
    gw = held(rig)
    runs = tuple(gw.sessions[KEY].held_runs)
    actions = run_ladder(rig.engine('held_after = "0s"\nheld_messages = "redeliver"\n'), "gw")
    assert outcomes(actions) == [
        (KEY, "reset", "reset"), (KEY, "verify", "healed"), (KEY, "redeliver", "redelivered"),
    ]  # fmt: skip
    again = resent(gw)
    assert [p["message"] for p in again] == list(TEXTS)
    assert [p["idempotencyKey"] for p in again] == [idempotency_key("gw", r) for r in runs]
    assert [k for _, k in rig.pager.triggers if k == "messages_dropped"] == []
    (status,) = gateway_status(rig.store, ["gw"])
    assert (status["messages_dropped_24h"], status["messages_redelivered_24h"]) == (2, 2)
    # the first redelivered message runs; the session is healthy and the episode closed
    assert gw.sessions[KEY].live_run == again[0]["idempotencyKey"]
    assert rig.store.episodes.open_episodes("gw") == {}
    assert rig.store.leases.holder("gw", KEY) is None


def _replay(rig: Rig, gw: SimGateway, actions: list[Any]) -> Any:
    """The redeliver step delivered again (Celery at least once), with the lease retaken."""
    step = next(a for a in actions if a.step == "redeliver")
    lease = rig.store.leases.acquire("gw", KEY, step.recovery_id, 30_000)
    assert lease is not None
    ref = AttemptRef(
        gateway="gw", key=KEY, verdict="held", session_id=gw.sessions[KEY].session_id,
        run_ids=tuple(d.run_id for d in gw.dropped_messages), recovery_id=step.recovery_id,
        attempt=1, lease_token=lease.token, after="reset",
    )  # fmt: skip
    return Steps(rig.engine('held_messages = "redeliver"\n')).run(Step.REDELIVER, ref)


def test_a_redelivered_redeliver_step_sends_nothing_twice(rig: Rig) -> None:
    gw = held(rig)
    actions = run_ladder(rig.engine('held_after = "0s"\nheld_messages = "redeliver"\n'), "gw")
    assert len(resent(gw)) == 2
    again = _replay(rig, gw, actions)
    assert again.outcome == "redelivered"  # the claims say done
    sends = [
        m for m in gw.mutations if m.method == "sessions.send" and "idempotencyKey" in m.params
    ]
    assert len(sends) == 2


def test_a_lost_claim_still_sends_once_the_idempotency_key_holds(rig: Rig) -> None:
    """A worker that died after sending but before recording it: the claims are gone, the
    retry sends again with the same keys, and the gateway runs nothing the second time."""
    gw = held(rig)
    actions = run_ladder(rig.engine('held_after = "0s"\nheld_messages = "redeliver"\n'), "gw")
    step = next(a for a in actions if a.step == "redeliver")
    for run_id in (d.run_id for d in gw.dropped_messages):
        rig.store.client.delete(
            rig.store.keys.step_claim(str(step.recovery_id), f"redeliver-{run_id}")
        )
    _replay(rig, gw, actions)
    outcomes_ = [m.outcome for m in gw.mutations if "idempotencyKey" in m.params]
    assert outcomes_.count("started") + outcomes_.count("queued") == 2
    assert outcomes_.count("deduplicated") == 2


def test_only_what_the_gateway_shows_lost_is_sent_again(rig: Rig) -> None:
    """A message the gateway lists answered (`consumed`) since was not lost: sending it again
    would make the agent answer twice."""
    gw = held(rig)
    engine = rig.engine('held_after = "0s"\nheld_messages = "redeliver"\n')
    actions = run_ladder(engine, "gw")
    first = gw.sessions[KEY].inputs[0]
    first["state"] = "consumed"
    rig.store.client.delete(
        *rig.store.client.scan_iter(match=rig.store.keys.step_claim("*", "*").replace("%2A", "*"))
    )
    gw.idempotency_keys.clear()  # nothing on the gateway's side catches a second send either
    before = len(resent(gw))
    replay = _replay(rig, gw, actions)
    assert "1 not lost" in replay.detail
    assert [p["message"] for p in resent(gw)[before:]] == [TEXTS[1]]


def test_too_old_messages_are_reported_not_sent(rig: Rig) -> None:
    gw = held(rig)
    actions = run_ladder(
        rig.engine('held_after = "0s"\nheld_messages = "redeliver"\nredeliver_max_age = "0s"\n'),
        "gw",
    )
    step = next(a for a in actions if a.step == "redeliver")
    assert step.outcome == "not_redelivered" and "2 too old" in step.detail
    assert resent(gw) == []
    assert [k for _, k in rig.pager.triggers if k == "messages_dropped"] == ["messages_dropped"]


def test_unreadable_texts_are_reported_not_guessed(rig: Rig) -> None:
    """A gateway whose chat.history lies (no pendingInputs, or junk): nothing is resent."""
    gw = held(rig)
    gw._history = lambda params, scopes: {"pendingInputs": {"items": [{"runId": 7}, "junk"]}}  # type: ignore[method-assign]
    actions = run_ladder(rig.engine('held_after = "0s"\nheld_messages = "redeliver"\n'), "gw")
    step = next(a for a in actions if a.step == "redeliver")
    assert step.outcome == "not_redelivered" and "2 not readable" in step.detail
    assert resent(gw) == []
    assert [k for _, k in rig.pager.triggers if k == "messages_dropped"] == ["messages_dropped"]


def test_a_zombie_without_held_messages_heals_as_before(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6")
    gw.add_zombie(KEY)
    actions = run_ladder(rig.engine('held_messages = "redeliver"\n'), "gw")
    assert outcomes(actions) == [
        (KEY, "abort", "no_active_run"), (KEY, "reset", "reset"), (KEY, "verify", "healed"),
    ]  # fmt: skip
    assert rig.pager.triggers == []


def test_a_text_the_gateway_cut_or_an_attachment_is_never_resent_in_part(rig: Rig) -> None:
    gw = held(rig)
    cut, attached = gw.sessions[KEY].inputs
    cut["message"] = {**cut["message"], "__openclaw": {"truncated": True, "reason": "oversized"}}
    attached["message"] = {
        **attached["message"],
        "content": [{"type": "text", "text": "see this:"}, {"type": "image", "url": "x"}],
    }
    actions = run_ladder(rig.engine('held_after = "0s"\nheld_messages = "redeliver"\n'), "gw")
    step = next(a for a in actions if a.step == "redeliver")
    assert step.outcome == "not_redelivered" and "2 not readable" in step.detail
    assert resent(gw) == []


def test_text_parts_are_resent_whole(rig: Rig) -> None:
    gw = held(rig, texts=("one",))
    (item,) = gw.sessions[KEY].inputs
    item["message"] = {**item["message"], "content": [
        {"type": "text", "text": "first half, "}, {"type": "text", "text": "second half"},
    ]}  # fmt: skip
    run_ladder(rig.engine('held_after = "0s"\nheld_messages = "redeliver"\n'), "gw")
    assert [p["message"] for p in resent(gw)] == ["first half, second half"]


def test_a_message_waiting_behind_a_zombie_shaped_row_is_recorded_too(rig: Rig) -> None:
    """Seen on real 2026.9.6: the user's message waited in `pendingInputs` while the row kept
    the zombie shape (`hasActiveRun: false`, `activeRunIds: []`). The reset still drops it,
    so the reset step looks in chat.history whatever the verdict."""
    gw = rig.gateway("gw", "2026.9.6")
    gw.held_listed = False
    gw.add_zombie(KEY)
    rig.sim.call(gw.handle, "sessions.send", {"key": KEY, "message": TEXTS[0]}, ["operator.write"])
    assert gw.row(gw.sessions[KEY])["activeRunIds"] == []
    actions = run_ladder(rig.engine('held_messages = "redeliver"\n'), "gw")
    assert outcomes(actions) == [
        (KEY, "abort", "no_active_run"), (KEY, "reset", "reset"), (KEY, "verify", "healed"),
        (KEY, "redeliver", "redelivered"),
    ]  # fmt: skip
    assert [p["message"] for p in resent(gw)] == [TEXTS[0]]


def test_an_escalated_held_lane_says_how_many_users_wait(rig: Rig) -> None:
    from supervisor.simulator import FaultMode

    gw = held(rig)
    gw.fault = FaultMode.RESET_NOOP  # the reset answers ok and changes nothing (#126836)
    run_ladder(rig.engine('held_after = "0s"\n'), "gw")
    pages = [d for (_, k), d in zip(rig.pager.triggers, rig.pager.details, strict=True)
             if k == "escalated"]  # fmt: skip
    assert len(pages) == 1 and pages[0]["messages_waiting"] == 2, rig.pager.triggers


# -- a message that races the reset ------------------------------------------------------------


def _collide(rig: Rig, gw: SimGateway, mode: str) -> list[Any]:
    """A user's message lands between the reset's final read and the reset itself."""
    from tests.recovery.test_safety import at_point, send_message

    with at_point("after_reread", "reset", send_message(rig, gw, TEXTS[0])):
        return run_ladder(rig.engine(f'held_messages = "{mode}"\n'), "gw")


def test_redeliver_gives_back_a_message_that_raced_the_reset(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6")
    gw.add_zombie(KEY)
    actions = _collide(rig, gw, "redeliver")
    assert outcomes(actions) == [
        (KEY, "abort", "no_active_run"), (KEY, "reset", "collided"), (KEY, "verify", "healed"),
        (KEY, "redeliver", "redelivered"),
    ]  # fmt: skip
    assert [d.text for d in gw.dropped_messages] == [TEXTS[0]]  # the reset did drop it
    assert [p["message"] for p in resent(gw)] == [TEXTS[0]]  # and it was given back, once
    assert [k for _, k in rig.pager.triggers] == []  # nothing for a person to follow up


def test_report_still_pages_the_collision(rig: Rig) -> None:
    gw = rig.gateway("gw", "2026.9.6")
    gw.add_zombie(KEY)
    actions = _collide(rig, gw, "report")
    assert (KEY, "reset", "collided") in outcomes(actions)
    assert (KEY, "verify", "healed") not in outcomes(actions)
    assert resent(gw) == []
    assert [k for _, k in rig.pager.triggers] == ["collided"]


def test_a_collision_the_gateway_does_not_list_stays_a_collision(rig: Rig) -> None:
    """2026.3.24 destroys the user's run with the reset and has no pendingInputs to read it
    back from: the collision page, as before, whatever the mode."""
    gw = rig.gateway("gw", "2026.3.24")
    gw.add_zombie(KEY)
    actions = _collide(rig, gw, "redeliver")
    assert (KEY, "reset", "collided") in outcomes(actions)
    assert [s for _, s, _ in outcomes(actions)].count("redeliver") == 0
    assert [k for _, k in rig.pager.triggers] == ["collided"]


def test_an_older_lost_message_is_never_picked_up_as_a_racer(rig: Rig) -> None:
    """Interrupted inputs from an earlier reset stay where they are: only one accepted after
    the reset step's read counts as having raced it."""
    gw = held(rig, texts=(TEXTS[1],))
    gw.handle("sessions.reset", {"key": KEY}, ["operator.admin"])  # someone else's reset
    earlier = gw.sessions[KEY].inputs
    assert [i["state"] for i in earlier] == ["interrupted"]
    gw.add_zombie(KEY)  # dead again, its pending list kept
    gw.sessions[KEY].inputs = earlier
    actions = _collide(rig, gw, "redeliver")
    assert (KEY, "redeliver", "redelivered") in outcomes(actions)
    assert [p["message"] for p in resent(gw)] == [TEXTS[0]]  # never the older TEXTS[1]

"""A sessions.list answer typed straight from its text reads exactly as the ordinary path does.

`read_list_answer` is the scan's fast path; whenever it accepts a frame, its rows, `hasMore` and
`nextOffset` must equal what `json.loads` then `parse_rows` make of the same text, and whatever
it refuses goes down that ordinary path. Generated frames mix readable and unreadable rows,
odd types in every field, and numbers and strings JSON allows but gateways rarely send.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.core.rows import SessionRow, UnreadableRow
from supervisor.gateway import client as client_module
from supervisor.gateway.client import GatewayClient
from supervisor.gateway.identity import DeviceIdentity
from supervisor.gateway.models import ListAnswer, parse_rows, read_list_answer
from supervisor.simulator import SimGateway, SimulatorServer
from tests.support.fixtures import TOKEN, spec_for

json_scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
timestamps = (
    st.none()
    | st.integers(min_value=0, max_value=2**53)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.sampled_from(["12", "1e3", "x", ""])
)
row = st.fixed_dictionaries(
    {"key": st.text(max_size=6) | json_scalar},
    optional={
        "sessionId": st.text(max_size=6) | json_scalar,
        "status": st.sampled_from(["running", "idle", "done"]) | json_scalar,
        "startedAt": timestamps,
        "endedAt": timestamps,
        "updatedAt": timestamps,
        "abortedLastRun": st.booleans() | json_scalar,
        "hasActiveRun": st.booleans() | json_scalar | st.sampled_from(["true", "no", 1, 0]),
        "activeRunIds": st.lists(st.text(max_size=4), max_size=3) | json_scalar,
        "lastRunId": st.text(max_size=4) | json_scalar,
        "kind": json_scalar,
    },
)
#: rows the model reads, some through its lax conversions ("12" for 12.0, "true" for True)
readable_row = st.fixed_dictionaries(
    {"key": st.text(min_size=1, max_size=6)},
    optional={
        "sessionId": st.text(max_size=6) | st.none(),
        "status": st.sampled_from(["running", "idle", "done"]) | st.none(),
        "startedAt": st.integers(min_value=0, max_value=2**53) | st.floats(allow_nan=False),
        "endedAt": st.none() | st.sampled_from(["12", "1e3", " 7 "]),
        "updatedAt": st.integers(min_value=-(2**60), max_value=2**60) | st.none(),
        "abortedLastRun": st.booleans() | st.sampled_from([0, 1, "false"]),
        "hasActiveRun": st.booleans() | st.sampled_from(["true", "no", 1, 0, None]),
        "activeRunIds": st.lists(st.text(max_size=4), max_size=3) | st.none(),
        "lastRunId": st.text(max_size=4) | st.none(),
        "kind": json_scalar,
    },
)
frames = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["res", "event", "req"]),
        "id": st.sampled_from(["r2", "r10", 7, None]),
        "ok": st.sampled_from([True, False, 1, None]),
        "payload": st.fixed_dictionaries(
            {"sessions": st.lists(readable_row | readable_row | readable_row | row, max_size=6)},
            optional={"hasMore": json_scalar, "nextOffset": json_scalar, "ts": json_scalar},
        )
        | st.lists(row, max_size=3)
        | json_scalar,
    },
    optional={"error": st.dictionaries(st.text(max_size=4), json_scalar, max_size=2)},
)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


@settings(max_examples=400)
@given(frame=frames)
def test_the_fast_path_reads_a_frame_as_the_ordinary_path_or_not_at_all(
    frame: dict[str, Any],
) -> None:
    text = json.dumps(frame)
    fast = read_list_answer(text)
    if fast is None:
        return  # the client decodes it the ordinary way
    ordinary = json.loads(text)
    # it took only what the ordinary path also treats as a successful answer (`ok` truthy)
    assert ordinary["type"] == "res" and ordinary.get("ok")
    assert str(fast.id) == str(ordinary["id"])
    payload = ordinary["payload"]
    assert isinstance(payload, dict)
    assert same(fast.payload.hasMore, payload.get("hasMore"))
    assert same(fast.payload.nextOffset, payload.get("nextOffset"))
    assert fast.payload.sessions == parse_rows(payload["sessions"])
    assert all(type(r) is SessionRow for r in fast.payload.sessions)


def test_a_listing_with_an_unreadable_row_is_left_to_the_ordinary_path() -> None:
    rows = [{"key": "a", "status": "idle"}, {"key": "b", "startedAt": True}]
    frame = {"type": "res", "id": "r2", "ok": True, "payload": {"sessions": rows}}
    assert read_list_answer(json.dumps(frame)) is None
    good = {**frame, "payload": {"sessions": rows[:1], "hasMore": True, "nextOffset": 1}}
    answer = read_list_answer(json.dumps(good))
    assert isinstance(answer, ListAnswer)
    assert answer.payload.sessions == parse_rows(rows[:1])
    assert (answer.payload.hasMore, answer.payload.nextOffset) == (True, 1)


def test_error_answers_events_and_text_that_is_not_json_are_left_alone() -> None:
    error = {"type": "res", "id": "r2", "ok": False, "error": {"code": "X"}}
    event = {"type": "event", "event": "tick", "payload": {"sessions": []}}
    for text in (json.dumps(error), json.dumps(event), "not json", '{"type":"res"', "[]"):
        assert read_list_answer(text) is None


@settings(max_examples=400)
@given(
    rows=st.lists(readable_row | readable_row | readable_row | row, max_size=8),
    more=st.fixed_dictionaries({}, optional={"hasMore": json_scalar, "nextOffset": json_scalar}),
)
def test_rows_of_a_successful_listing_read_as_parse_rows_reads_them(
    rows: list[dict[str, Any]], more: dict[str, Any]
) -> None:
    text = json.dumps(
        {"type": "res", "id": "r2", "ok": True, "payload": {"sessions": rows, **more}}
    )
    fast = read_list_answer(text)
    ordinary = parse_rows(json.loads(text)["payload"]["sessions"])
    if fast is None:
        # refused only when some row is unreadable: the ordinary path then says why
        assert any(type(r) is not SessionRow for r in ordinary)
        return
    assert fast.payload.sessions == ordinary


@pytest.mark.parametrize("version", ["2026.9.6", "2026.3.24"])
async def test_the_client_lists_through_the_fast_path_and_falls_back_per_page(
    sim: SimulatorServer,
    identity: DeviceIdentity,
    version: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw = sim.add(SimGateway("gw", version=version, token=TOKEN))  # type: ignore[arg-type]
    for i in range(250):  # 2026.9.6 pages these: 100, then 150 of 200 asked for
        gw.add_idle(f"agent:dev:s{i:03}")
    ordinary: list[int] = []
    real_parse_rows = client_module.parse_rows

    def counting(raws: list[Any]) -> Any:
        ordinary.append(len(raws))
        return real_parse_rows(raws)

    monkeypatch.setattr(client_module, "parse_rows", counting)
    async with GatewayClient(spec_for(sim.url("gw")), identity) as client:
        if version == "2026.3.24":  # unpaired devices get no scopes there
            gw.paired_devices.add(identity.device_id)
        rows = await client.list_sessions()
        assert [r.key for r in rows] == [f"agent:dev:s{i:03}" for i in range(250)]
        assert ordinary == []  # every page was typed from its text
        plain_row = gw.row
        monkeypatch.setattr(
            gw,
            "row",
            lambda s: (
                {**plain_row(s), "startedAt": True} if s.key == "agent:dev:s100" else plain_row(s)
            ),
        )
        rows = await client.list_sessions()
    unreadable = [r for r in rows if isinstance(r, UnreadableRow)]
    assert [r.key for r in unreadable] == ["agent:dev:s100"]
    assert "startedAt" in unreadable[0].problem
    # only the page holding the unreadable row went the ordinary way
    assert ordinary == ([150] if version == "2026.9.6" else [250])

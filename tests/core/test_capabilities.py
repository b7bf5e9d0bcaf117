"""Capabilities per gateway from its hello and its rows (`supervisor.core.capabilities`), over
every line the simulator serves and over combinations no measured line shows. Pure: the
simulator's state machine answers in-process (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.core.capabilities import Capabilities, Tri, decide, measured_line
from supervisor.core.detect import GatewayView, VerdictKind, classify
from supervisor.core.policy import Policy
from supervisor.core.rows import SessionRow, UnreadableRow
from supervisor.gateway.models import parse_row, parse_rows
from supervisor.simulator import SimGateway, Version

Y, N, U = Tri.YES, Tri.NO, Tri.UNKNOWN
ALL = ["operator.read", "operator.write", "operator.admin"]

#: line -> (has_active_run, run ids live, [] idle, reconciles, lanes, describe, get,
#:          abort by runId, reset with expectedSessionId, counts waiting)
EXPECTED: dict[str, tuple[Tri, ...]] = {
    "2026.3.24": (N, N, N, N, N, N, N, N, N, N),
    "2026.5.28": (Y, N, N, Y, N, Y, N, Y, N, N),
    "2026.7.35": (Y, Y, N, Y, N, Y, N, Y, N, N),
    "2026.9.6": (Y, N, Y, N, Y, Y, N, Y, Y, Y),  # sessions.get: answered, not advertised
}
FIELDS = (
    "has_active_run", "active_run_ids_live", "active_run_ids_idle", "restart_reconciles",
    "diagnostics_lanes", "sessions_describe", "sessions_get", "abort_by_run_id",
    "reset_expected_session_id",
)  # fmt: skip


def as_tuple(c: Capabilities) -> tuple[Tri, ...]:
    return (*(getattr(c, f) for f in FIELDS), c.counts_waiting)


def scene(gw: SimGateway, name: str) -> None:
    if name in ("idle", "mixed"):
        gw.add_idle("agent:dev:idle")
    if name == "mixed":
        gw.add_zombie("agent:dev:zombie")
        gw.add_live("agent:dev:live")
        gw.add_zombie("agent:dev:held")
        gw.handle("sessions.send", {"key": "agent:dev:held", "message": "hi"}, ALL)


def look(gw: SimGateway) -> tuple[dict[str, Any], list[SessionRow | UnreadableRow]]:
    hello = gw.hello(gw.protocol, ALL)
    rows = parse_rows(gw.handle("sessions.list", {}, ALL)["sessions"])
    return hello, rows


def caps_of(hello: dict[str, Any], rows: list[SessionRow | UnreadableRow]) -> Capabilities:
    return decide(
        protocol=hello["protocol"],
        server_version=hello["server"]["version"],
        methods=frozenset(hello["features"]["methods"]),
        rows=rows,
    )


@pytest.mark.parametrize("scene_name", ["empty", "idle", "mixed"])
@pytest.mark.parametrize("version", [v.value for v in Version])
def test_every_served_line_has_its_measured_capabilities(version: str, scene_name: str) -> None:
    gw = SimGateway("gw", version=version)
    scene(gw, scene_name)
    caps = caps_of(*look(gw))
    assert as_tuple(caps) == EXPECTED[version], caps.notes
    assert caps.line == version
    assert caps.notes == ()


def test_the_matrix_covers_every_served_line() -> None:
    assert set(EXPECTED) == {v.value for v in Version}


@pytest.mark.parametrize("version", [v.value for v in Version])
def test_an_unmeasured_version_keeps_only_what_rows_and_methods_show(version: str) -> None:
    gw = SimGateway("gw", version=version)
    scene(gw, "mixed")
    hello, rows = look(gw)
    hello["server"]["version"] = "2026.6.2"
    caps = caps_of(hello, rows)
    assert caps.line is None
    # the table's facts are unknown; what the rows and the methods show stays
    assert caps.restart_reconciles is U
    assert caps.abort_by_run_id is U
    assert caps.reset_expected_session_id is U
    exp = dict(zip(FIELDS, EXPECTED[version], strict=False))
    assert caps.has_active_run is exp["has_active_run"]
    assert caps.diagnostics_lanes is exp["diagnostics_lanes"]
    assert caps.sessions_get is exp["sessions_get"]
    assert caps.sessions_describe is exp["sessions_describe"]
    if version in ("2026.5.28", "2026.9.6"):
        assert caps.active_run_ids_live is N  # the live row lists no id: the rows say so
    if version == "2026.7.35":
        assert caps.active_run_ids_live is U  # listed ids: held or live? only the table knew
    if version == "2026.9.6":
        assert caps.active_run_ids_idle is Y and caps.counts_waiting is Y


def test_an_unmeasured_version_with_no_live_row_cannot_tell_held_from_live() -> None:
    gw = SimGateway("gw", version="2026.9.6")
    scene(gw, "idle")
    gw.add_zombie("agent:dev:held")
    gw.handle("sessions.send", {"key": "agent:dev:held", "message": "hi"}, ALL)
    hello, rows = look(gw)
    hello["server"]["version"] = "2026.9.4"
    caps = caps_of(hello, rows)
    assert caps.active_run_ids_live is U and caps.counts_waiting is U


@pytest.mark.parametrize(
    "version",
    ["", None, "9.6", "2026.9", "2026.9.6-beta.1", "v2026.9.6x", "2026.9.6; rm", "2026.9.60"],
)
def test_no_version_string_but_an_exact_measured_one_names_a_line(version: str | None) -> None:
    assert measured_line(version) is None


def test_build_metadata_keeps_the_line() -> None:
    assert measured_line("2026.9.6+abc123") == "2026.9.6"
    assert measured_line("v2026.3.24") == "2026.3.24"


def test_a_version_that_contradicts_the_protocol_is_not_believed() -> None:
    gw = SimGateway("gw", version="2026.9.6")
    scene(gw, "mixed")
    hello, rows = look(gw)
    hello["protocol"] = 3
    caps = caps_of(hello, rows)
    assert caps.line is None and any("protocol" in n for n in caps.notes)
    assert caps.reset_expected_session_id is U and caps.restart_reconciles is U
    assert caps.has_active_run is Y  # the rows carry it, whatever the protocol


def test_rows_that_contradict_the_measured_line_make_it_unknown() -> None:
    gw = SimGateway("gw", version="2026.9.6")
    scene(gw, "mixed")  # a live run without ids listed
    hello, rows = look(gw)
    hello["server"]["version"] = "2026.7.35"  # which lists a live run's id
    caps = caps_of(hello, rows)
    assert caps.active_run_ids_live is U
    assert any("activeRunIds of a live run" in n for n in caps.notes)


def test_methods_not_listed_are_unknown() -> None:
    caps = decide(protocol=4, server_version="2026.9.6", methods=None, rows=[])
    assert caps.diagnostics_lanes is U and caps.sessions_get is U and caps.sessions_describe is U


def test_a_refusal_learned_at_run_time_overrides_the_table() -> None:
    caps = decide(
        protocol=4,
        server_version="2026.9.6",
        methods=frozenset(),
        rows=[],
        expected_session_id_refused=True,
    )
    assert caps.reset_expected_session_id is N


def test_protocol_3_rows_decide_has_active_run() -> None:
    plain = [parse_row({"key": "agent:a:b", "status": "running"})]
    assert decide(protocol=3, server_version=None, methods=None, rows=plain).has_active_run is N
    carrying = [*plain, parse_row({"key": "agent:a:c", "hasActiveRun": False})]
    assert decide(protocol=3, server_version=None, methods=None, rows=carrying).has_active_run is Y
    bad: list[SessionRow | UnreadableRow] = [UnreadableRow(key="k", problem="x")]
    assert decide(protocol=3, server_version=None, methods=None, rows=bad).has_active_run is U


def test_as_dict_is_plain_json() -> None:
    doc = decide(protocol=4, server_version="2026.9.6", methods=frozenset(), rows=[]).as_dict()
    assert doc["line"] == "2026.9.6" and doc["reset_expected_session_id"] == "yes"
    assert set(doc) >= {*FIELDS, "counts_waiting", "notes"}


# -- detection by capabilities -----------------------------------------------------------------

NOW = 1_795_600_000_000.0
BOOT = NOW - 30 * 60_000
POLICY = Policy(stale_after=60, held_after=60)
HELD_SHAPE = {
    "key": "agent:dev:h",
    "status": "running",
    "hasActiveRun": True,
    "activeRunIds": ["run-1", "run-2"],
    "startedAt": BOOT - 3_600_000,
    "updatedAt": BOOT,
}
ZOMBIE_SHAPE = {
    "key": "agent:dev:z",
    "status": "running",
    "hasActiveRun": False,
    "startedAt": BOOT - 3_600_000,
    "updatedAt": BOOT,
}


def view(caps: Capabilities) -> GatewayView:
    return GatewayView(protocol=4, now_ms=NOW, boot_time_ms=BOOT, capabilities=caps)


def line_caps(version: str, **over: Any) -> Capabilities:
    base = decide(protocol=3 if version == "2026.3.24" else 4, server_version=version,
                  methods=frozenset(), rows=[])  # fmt: skip
    return Capabilities(**{**base.__dict__, **over})


def test_held_needs_a_line_that_does_not_list_live_run_ids() -> None:
    row = parse_row(HELD_SHAPE)
    held = classify(row, gateway=view(line_caps("2026.9.6")), policy=POLICY)
    assert held.kind is VerdictKind.HELD and held.waiting == 2 and held.needs_action
    # 7.35 lists a live run's own id: the listed run is that run, nothing is held
    live = classify(row, gateway=view(line_caps("2026.7.35")), policy=POLICY)
    assert live.kind is VerdictKind.LIVE and live.waiting is None
    unknown = classify(row, gateway=view(line_caps("2026.9.6", active_run_ids_live=U)),
                       policy=POLICY)  # fmt: skip
    assert unknown.kind is VerdictKind.UNKNOWN and not unknown.needs_action


def test_has_active_run_unknown_leaves_running_rows_unknown() -> None:
    caps = line_caps("2026.9.6", has_active_run=U)
    v = classify(parse_row(ZOMBIE_SHAPE), gateway=view(caps), policy=POLICY)
    assert v.kind is VerdictKind.UNKNOWN
    idle = classify(parse_row({"key": "agent:dev:i", "status": "done"}), gateway=view(caps),
                    policy=POLICY)  # fmt: skip
    assert idle.kind is VerdictKind.IDLE


def test_zombie_waiting_is_zero_only_where_the_row_proves_it() -> None:
    empty = parse_row({**ZOMBIE_SHAPE, "activeRunIds": []})
    z96 = classify(empty, gateway=view(line_caps("2026.9.6")), policy=POLICY)
    assert z96.kind is VerdictKind.ZOMBIE and z96.waiting == 0
    z528 = classify(parse_row(ZOMBIE_SHAPE), gateway=view(line_caps("2026.5.28")), policy=POLICY)
    assert z528.kind is VerdictKind.ZOMBIE and z528.waiting is None
    old = GatewayView(
        protocol=3, now_ms=NOW, boot_time_ms=BOOT, capabilities=line_caps("2026.3.24")
    )
    z324 = classify(parse_row({**ZOMBIE_SHAPE, "hasActiveRun": None}), gateway=old, policy=POLICY)
    assert z324.kind is VerdictKind.ZOMBIE and z324.waiting is None

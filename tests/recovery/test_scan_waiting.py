"""The scanner records the messages waiting behind a gateway's held and zombie lanes for
`status`, and hands each attempt its lane's count (the page says it); real valkey, simulated
gateways."""

from __future__ import annotations

from rich.console import Console

from supervisor.recovery.scanner import Scanner
from supervisor.status import gateway_status, render_status
from tests.recovery.conftest import Rig

ALL = ["operator.read", "operator.write", "operator.admin"]


def test_status_shows_what_waits_and_unknown_where_nothing_tells(rig: Rig) -> None:
    new = rig.gateway("new", "2026.9.6")
    new.add_zombie("agent:dev:held")
    new.add_zombie("agent:dev:zombie")
    for text in ("one", "two"):
        new.handle("sessions.send", {"key": "agent:dev:held", "message": text}, ALL)
    rig.gateway("old", "2026.3.24").add_zombie("agent:dev:zombie")
    engine = rig.engine(dry_run=True)
    outs = {name: Scanner(engine).scan(name) for name in ("new", "old")}
    rows = {r["name"]: r for r in gateway_status(rig.store, ["new", "old"])}
    assert rows["new"]["messages_waiting"] == 2 and rows["new"]["lane_queued"] == 2
    assert rows["old"]["messages_waiting"] is None and rows["old"]["lane_queued"] is None
    console = Console(width=300, record=True)
    console.print(render_status(list(rows.values())))
    text = console.export_text()
    assert "2 messages waiting" in text and "messages waiting: unknown" in text
    # each attempt carries its lane's count from detection, for the page
    waiting = {(n, s.ref.key): s.ref.waiting for n, o in outs.items() for s in o.starts}
    assert waiting[("new", "agent:dev:zombie")] == 0
    assert waiting[("old", "agent:dev:zombie")] is None

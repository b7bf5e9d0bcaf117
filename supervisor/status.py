"""`lane-supervisor status`: what the scans recorded in Redis, per gateway (no gateway calls)."""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table

from supervisor.core.lanes import waiting_text
from supervisor.state import StateStore


def gateway_status(store: StateStore, names: list[str] | None) -> list[dict[str, Any]]:
    """One JSON-ready row per gateway (the fleet's, else every gateway Redis knows)."""
    now_ms = time.time() * 1000
    rows = []
    for name in names if names is not None else store.episodes.gateways_known():
        state = store.episodes.gateway_state(name)
        episodes = store.episodes.open_episodes(name)
        reachable = None if state.last_scan_ms is None else state.failures == 0
        dropped = store.held.recent(name, now_ms=now_ms)
        rows.append(
            {
                "name": name,
                "reachable": reachable,
                "protocol": state.protocol,
                "sessions": state.counts,
                "messages_waiting": state.messages_waiting,
                "lane_queued": state.lane_queued,
                "recovering": sum(1 for e in episodes.values() if not e.escalated),
                "escalated": sum(1 for e in episodes.values() if e.escalated),
                "unreachable_breaker_open": state.unreachable_open,
                "zombie_breaker_open": state.breaker_open,
                "last_scan_age_s": None
                if state.last_scan_ms is None
                else round((now_ms - state.last_scan_ms) / 1000, 1),
                "last_error": state.last_error,
                "last_error_kind": state.last_error_kind,
                # users' messages our resets dropped from behind dead lanes, the last 24 h
                "messages_dropped_24h": sum(d.dropped for d in dropped),
                "messages_redelivered_24h": sum(d.redelivered for d in dropped),
                "messages_dropped": [d.model_dump(mode="json") for d in dropped],
            }
        )
    return rows


def render_status(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="lane-supervisor status", title_justify="left")
    for col in (
        "gateway", "reachable", "protocol", "sessions", "waiting", "recovering", "escalated",
        "breakers", "dropped 24h", "last scan", "error",
    ):  # fmt: skip
        table.add_column(col, overflow="fold")
    for r in rows:
        breakers = [
            label
            for label, flag in (
                ("unreachable", r["unreachable_breaker_open"]),
                ("zombies", r["zombie_breaker_open"]),
            )
            if flag
        ]
        reach = {None: "[dim]never scanned[/]", True: "[green]yes[/]", False: "[red]no[/]"}
        table.add_row(
            r["name"],
            reach[r["reachable"]],
            str(r["protocol"] or "-"),
            ", ".join(f"{k} {v}" for k, v in sorted(r["sessions"].items())) or "-",
            waiting_text(r.get("messages_waiting")),
            str(r["recovering"]),
            f"[red]{r['escalated']}[/]" if r["escalated"] else "0",
            "[red]" + ", ".join(breakers) + "[/]" if breakers else "-",
            _dropped(r),
            "-" if r["last_scan_age_s"] is None else f"{r['last_scan_age_s']:.0f}s ago",
            r["last_error"] or "",
        )
    return table


def _dropped(row: dict[str, Any]) -> str:
    dropped, again = row["messages_dropped_24h"], row["messages_redelivered_24h"]
    if not dropped:
        return "-"
    lost = dropped - again
    text = f"{dropped} ({again} redelivered)" if again else str(dropped)
    return f"[yellow]{text}[/]" if lost else text

"""`lane-supervisor status`: what the scans recorded in Redis, per gateway (no gateway calls).

Also the compact summary `up` shows while it runs (`fleet_summary`, `render_summary`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from supervisor.core.lanes import waiting_text
from supervisor.errors import StateError
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


#: audit steps that are recovery actions (`up`'s summary lists the newest of them)
ACTION_STEPS = ("abort", "reset", "verify", "escalate")
#: audit records `up`'s summary reads back for its recent actions and pages
SUMMARY_AUDIT_TAIL = 500


@dataclass(frozen=True)
class FleetSummary:
    """What `up` shows while it runs: the fleet in a few numbers, and what was done lately."""

    gateways: int
    reachable: int
    unreachable: int
    never_scanned: int
    verdicts: dict[str, int]
    recovering: int
    escalated: int
    breakers_open: int
    open_incidents: int
    #: newest last; audit records as dicts (step, gateway, key, outcome, detail, ts_ms)
    actions: list[dict[str, Any]] = field(default_factory=list)
    pages: list[dict[str, Any]] = field(default_factory=list)
    #: gateways needing a look (unreachable, recovering, escalated, a breaker open), by name
    attention: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        """One plain line (non-terminal output of `up`)."""
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items())) or "none yet"
        return (
            f"gateways {self.gateways} ({self.reachable} reachable, {self.unreachable} "
            f"unreachable, {self.never_scanned} not scanned yet) | sessions: {verdicts} | "
            f"recovering {self.recovering}, escalated {self.escalated}, "
            f"breakers open {self.breakers_open}, open incidents {self.open_incidents}"
        )


def fleet_summary(store: StateStore, names: list[str] | None, *, recent: int = 8) -> FleetSummary:
    """Read the summary from Redis (the same rows as `status`, plus the audit's tail)."""
    rows = gateway_status(store, names)
    verdicts: dict[str, int] = {}
    for r in rows:
        for verdict, n in r["sessions"].items():
            verdicts[verdict] = verdicts.get(verdict, 0) + n
    records = [
        r.model_dump(mode="json", exclude_none=True) for r in store.audit.tail(SUMMARY_AUDIT_TAIL)
    ]
    attention = [
        r
        for r in rows
        if r["reachable"] is False
        or r["recovering"]
        or r["escalated"]
        or r["unreachable_breaker_open"]
        or r["zombie_breaker_open"]
    ]
    return FleetSummary(
        gateways=len(rows),
        reachable=sum(1 for r in rows if r["reachable"] is True),
        unreachable=sum(1 for r in rows if r["reachable"] is False),
        never_scanned=sum(1 for r in rows if r["reachable"] is None),
        verdicts=verdicts,
        recovering=sum(r["recovering"] for r in rows),
        escalated=sum(r["escalated"] for r in rows),
        breakers_open=sum(
            1 for r in rows if r["unreachable_breaker_open"] or r["zombie_breaker_open"]
        ),
        open_incidents=len(store.incidents.list_open()),
        # `sending` is the write-ahead record of a mutating step; its outcome follows
        actions=[r for r in records if r["step"] in ACTION_STEPS and r["outcome"] != "sending"][
            -recent:
        ],
        pages=[r for r in records if r["step"] == "page"][-recent:],
        attention=attention[:recent],
    )


def record_line(record: dict[str, Any]) -> str:
    """One audit record as a short line: time, gateway, key, step, outcome, detail."""
    when = datetime.fromtimestamp(record["ts_ms"] / 1000, UTC).strftime("%H:%M:%S")
    target = record["gateway"] + (f" {record['key']}" if record.get("key") else "")
    detail = f" ({record['detail']})" if record.get("detail") else ""
    return f"{when} {target} {record['step']} {record['outcome']}{detail}"


def render_summary(summary: FleetSummary, footer: str = "") -> Group:
    """The live view of `up`: counts, gateways needing a look, recent actions and pages."""
    head = Table.grid(padding=(0, 2))
    head.add_row(
        f"[bold]gateways[/] {summary.gateways}",
        f"reachable [green]{summary.reachable}[/]",
        f"unreachable {_red(summary.unreachable)}",
        f"not scanned yet {summary.never_scanned}",
    )
    verdicts = ", ".join(f"{k} {v}" for k, v in sorted(summary.verdicts.items())) or "none yet"
    head.add_row(
        f"[bold]recovering[/] {summary.recovering}",
        f"escalated {_red(summary.escalated)}",
        f"breakers open {_red(summary.breakers_open)}",
        f"open incidents {_red(summary.open_incidents)}",
    )
    parts: list[Any] = [head, f"[bold]sessions[/] {verdicts}"]
    if summary.attention:
        parts.append(render_status(summary.attention))
    for title, records in (("recent actions", summary.actions), ("recent pages", summary.pages)):
        parts.append(f"[bold]{title}[/]")
        parts.extend(f"  {escape(record_line(r))}" for r in records)
        if not records:
            parts.append("  [dim]none yet[/]")
    if footer:
        parts.append(f"[dim]{escape(footer)}[/]")
    return Group(*parts)


def _red(n: int) -> str:
    return f"[red]{n}[/]" if n else "0"


class SummaryView:
    """The compact view of `up`: live on a terminal, plain lines elsewhere (CI, pipes): each
    new action and page, and the counts line when it changed or `repeat_s` went by."""

    def __init__(
        self,
        url: str,
        names: list[str] | None,
        console: Console,
        *,
        prefix: str,
        footer: str,
        repeat_s: float,
    ) -> None:
        self._url = url
        self._names = names
        self._console = console
        self._prefix = prefix
        self._footer = footer
        self._repeat_s = repeat_s
        self._store: StateStore | None = None
        self._live: Live | None = None
        self._last_line = ""
        self._last_printed = 0.0
        self._seen: set[tuple[object, ...]] = set()

    def __enter__(self) -> SummaryView:
        if self._console.is_terminal:
            self._live = Live(
                "[dim]waiting for the first scans...[/]",
                console=self._console,
                refresh_per_second=4,
                redirect_stderr=True,
                redirect_stdout=True,
            )
            self._live.__enter__()
        else:
            print(f"up: {self._footer}", file=sys.stderr, flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
        if self._store is not None:
            self._store.close()

    def _read(self) -> FleetSummary | None:
        try:
            if self._store is None:
                self._store = StateStore.from_url(self._url, prefix=self._prefix)
            return fleet_summary(self._store, self._names)
        except StateError as exc:
            if self._live is not None:
                self._live.update(f"[red]Redis: {exc}[/]")
            return None

    def refresh(self) -> None:
        summary = self._read()
        if summary is None:
            return
        if self._live is not None:
            self._live.update(render_summary(summary, self._footer))
            return
        # plain: each new action and page once (of the newest few: bounded however busy),
        # and the counts line when it changed
        shown: set[tuple[object, ...]] = set()
        for record in summary.actions + summary.pages:
            ident = (record["ts_ms"], record["gateway"], record.get("key"), record["step"],
                     record["outcome"])  # fmt: skip
            shown.add(ident)
            if ident not in self._seen:
                print(f"up: {record_line(record)}", file=sys.stderr, flush=True)
        self._seen = shown
        line = summary.line()
        if line != self._last_line or time.monotonic() - self._last_printed >= self._repeat_s:
            self._last_line, self._last_printed = line, time.monotonic()
            stamp = time.strftime("%H:%M:%S", time.gmtime())
            print(f"up: {stamp} {line}", file=sys.stderr, flush=True)

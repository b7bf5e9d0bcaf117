"""Human-readable output of reports (rich tables); JSON output is the pydantic models' own."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from supervisor.core.lanes import waiting_text
from supervisor.scan import GatewayReport

_STYLE = {
    "zombie": "bold red",
    "live_overdue": "bold yellow",
    "held": "yellow",
    "zombie_pending": "magenta",
    "unknown": "cyan",
    "live": "green",
    "idle": "dim",
}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def render_check(console: Console, reports: Sequence[GatewayReport], *, all_rows: bool) -> None:
    """One summary table of gateways, then the sessions worth a look (all with `all_rows`)."""
    summary = Table(title="Gateways", title_justify="left")
    for col in ("gateway", "reachable", "protocol", "version", "sessions", "verdicts", "error"):
        summary.add_column(col)
    for r in reports:
        counts = Counter(s.verdict for s in r.sessions)
        verdicts = ", ".join(f"[{_STYLE.get(k, '')}]{k} {n}[/]" for k, n in sorted(counts.items()))
        summary.add_row(
            r.name,
            "[green]yes[/]" if r.reachable and not r.error else "[red]no[/]",
            str(r.protocol or "-"),
            r.server_version or "-",
            str(len(r.sessions)),
            verdicts or "-",
            f"[red]{r.error_kind}[/]: {r.error}" if r.error else "",
        )
    console.print(summary)
    for r in reports:
        line = capabilities_line(r)
        if line:
            console.print(line, soft_wrap=True, highlight=False, markup=False)
    rows = Table(title="Sessions", title_justify="left")
    for col in ("gateway", "key", "verdict", "age", "waiting", "reason"):
        rows.add_column(col, overflow="fold")
    shown = 0
    for r in reports:
        for s in r.sessions:
            if all_rows or s.verdict not in {"idle", "live"}:
                style = _STYLE.get(s.verdict, "")
                waiting = waiting_text(s.waiting) if s.verdict in _WAITING else ""
                rows.add_row(
                    r.name, s.key, f"[{style}]{s.verdict}[/]", _age(s.age_s), waiting, s.reason
                )
                shown += 1
    if shown:
        console.print(rows)
    else:
        console.print("No session needs a look (use --all to list every session).")


_WAITING = frozenset({"held", "zombie", "zombie_pending"})
#: the capabilities' JSON names, shortened for one line per gateway
_CAPS_SHORT = (
    ("has_active_run", "hasActiveRun"),
    ("active_run_ids_live", "runIds(live)"),
    ("active_run_ids_idle", "runIds[](idle)"),
    ("restart_reconciles", "reconciles"),
    ("diagnostics_lanes", "lanes"),
    ("sessions_describe", "describe"),
    ("sessions_get", "get"),
    ("abort_by_run_id", "abort(runId)"),
    ("reset_expected_session_id", "reset(expectedSessionId)"),
)


def capabilities_line(r: GatewayReport) -> str:
    """`name: hasActiveRun yes, ...; lanes queued N, ...; N messages waiting` (one line)."""
    caps = r.capabilities
    if caps is None:
        return ""
    parts = ", ".join(f"{short} {caps.get(name, 'unknown')}" for name, short in _CAPS_SHORT)
    text = f"{r.name} ({caps.get('line') or 'unmeasured line'}): {parts}"
    if r.lanes is not None:
        text += (
            f"; lanes: {r.lanes['session_queued']} queued on {r.lanes['queued_session_lanes']} "
            f"session lane(s), {r.lanes['session_active']} active"
        )
    elif r.lanes_error is not None:
        text += f"; lanes: unknown ({r.lanes_error})"
    return f"{text}; held/zombie lanes: {waiting_text(r.messages_waiting)}"


def render_actions(console: Console, actions: Sequence[dict[str, Any]]) -> None:
    """What `heal` did, one row per step."""
    if not actions:
        console.print("No action taken.")
        return
    table = Table(title="Actions", title_justify="left")
    for col in ("gateway", "key", "step", "outcome", "detail"):
        table.add_column(col, overflow="fold")
    for a in actions:
        table.add_row(a["gateway"], a.get("key") or "-", a["step"], a["outcome"], a["detail"])
    console.print(table)


def render_audit(console: Console, records: Sequence[dict[str, Any]]) -> None:
    """Audit records, oldest first."""
    table = Table(title="Audit", title_justify="left")
    for col in ("time (UTC)", "gateway", "key", "step", "outcome", "token", "detail"):
        table.add_column(col, overflow="fold")
    for r in records:
        when = datetime.fromtimestamp(r["ts_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            when,
            r["gateway"],
            r.get("key", "-"),
            r["step"],
            r["outcome"] + (" (dry run)" if r.get("dry_run") else ""),
            str(r.get("fencing_token", "")),
            r.get("detail", ""),
        )
    console.print(table)


def render_incidents(
    console: Console, incidents: Sequence[dict[str, Any]], silences: Sequence[dict[str, Any]]
) -> None:
    """Open incidents, then active silences."""
    if not incidents:
        console.print("No open incident.")
    else:
        table = Table(
            title="Open incidents",
            title_justify="left",
            caption="each one's story: lane-supervisor audit -g <gateway> -k <session key>",
            caption_justify="left",
        )
        for col in ("dedup key", "kind", "severity", "opened (UTC)", "notified", "providers"):
            table.add_column(col, overflow="fold")
        for i in incidents:
            opened = datetime.fromtimestamp(i["opened_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            table.add_row(
                i["dedup_key"], i["kind"], i["severity"], opened, str(i["seq"]),
                ", ".join(i.get("targets") or i.get("providers") or []),
            )  # fmt: skip
        console.print(table)
    if silences:
        table = Table(title="Silences", title_justify="left")
        for col in ("target", "actions too", "expires (UTC)", "reason"):
            table.add_column(col, overflow="fold")
        for s in silences:
            target = s["gateway"] + (f"/{s['key']}" if s.get("key") else "")
            ends = datetime.fromtimestamp(s["expires_ms"] / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            table.add_row(target, "yes" if s["also_actions"] else "no", ends, s["reason"])
        console.print(table)

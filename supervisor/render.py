"""Human-readable output of reports (rich tables); JSON output is the pydantic models' own."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

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
    rows = Table(title="Sessions", title_justify="left")
    for col in ("gateway", "key", "verdict", "age", "reason"):
        rows.add_column(col, overflow="fold")
    shown = 0
    for r in reports:
        for s in r.sessions:
            if all_rows or s.verdict not in {"idle", "live"}:
                style = _STYLE.get(s.verdict, "")
                rows.add_row(r.name, s.key, f"[{style}]{s.verdict}[/]", _age(s.age_s), s.reason)
                shown += 1
    if shown:
        console.print(rows)
    else:
        console.print("No session needs a look (use --all to list every session).")

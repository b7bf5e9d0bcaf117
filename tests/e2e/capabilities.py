"""The capabilities `check --json` must report for each real release line (README, "Release
lines": "Capabilities, not version strings"), and the messages-waiting fields that go with them."""

from __future__ import annotations

from typing import Any

NAMES = ("has_active_run", "active_run_ids_live", "active_run_ids_idle", "restart_reconciles",
         "diagnostics_lanes", "sessions_describe", "sessions_get", "abort_by_run_id",
         "reset_expected_session_id", "counts_waiting")  # fmt: skip
EXPECTED = {
    "2026.3.24": "no no no no no no no no no no",
    "2026.5.28": "yes no no yes no yes no yes no no",
    "2026.7.35": "yes yes no yes no yes no yes no no",
    "2026.9.6": "yes no yes no yes yes no yes yes yes",  # sessions.get is not advertised
}


def assert_capabilities(report: dict[str, Any], version: str, zombies: tuple[str, ...]) -> None:
    """The gateway's capabilities, and what waits behind its zombies (nothing is held here)."""
    caps = report["capabilities"]
    assert caps is not None, report
    assert " ".join(caps[n] for n in NAMES) == EXPECTED[version], caps
    assert caps["line"] == version and caps["notes"] == [], caps
    waiting = {s["key"]: s["waiting"] for s in report["sessions"]}
    if version == "2026.9.6":
        assert all(waiting[k] == 0 for k in zombies), waiting
        assert report["messages_waiting"] == 0
        assert report["lanes"] is not None and report["lanes_error"] is None, report["lanes_error"]
    else:
        assert all(waiting[k] is None for k in zombies), waiting
        assert report["messages_waiting"] is None
        assert report["lanes"] is None and report["lanes_error"] is None

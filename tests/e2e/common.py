"""What every part of the e2e harness shares: the release lines served, names, the error type."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENSURE_SCRIPT = REPO / "scripts" / "ensure-openclaw.sh"
#: every release line the real-gateway tests run (scripts/ensure-openclaw.sh installs them)
VERSIONS = ("2026.9.6", "2026.3.24", "2026.5.28", "2026.7.35")
#: lines whose interrupted rows stay `running` across a restart: SIGKILL + start makes zombies
RESTART_ZOMBIE_LINES = ("2026.9.6", "2026.3.24")
#: lines that mark interrupted rows `failed` a few seconds after the restart (README, "Release
#: lines"): their zombies come only from runs that die inside a live process
RECONCILING_LINES = ("2026.5.28", "2026.7.35")
#: lines that replay the first interrupted session (in key order) after a restart
REPLAYS_AT_RESTART = frozenset({"2026.9.6"})
#: a pending turn containing this text is never answered by the fake model
HANG_MARKER = "HANG-FOREVER"
#: the agent every session belongs to (the default agent of a config without an agents list)
AGENT = "main"
#: environment variable marking every process a RealGateway starts: `<run tag>/<gateway>`
TAG_ENV = "LANE_SUPERVISOR_E2E_GATEWAY"


class HarnessError(RuntimeError):
    """The e2e harness could not do what was asked (with the evidence in the message)."""


class OpenClawMissing(HarnessError):
    """Node or an openclaw version is not installed."""


def session_key(name: str, agent: str = AGENT) -> str:
    """`agent:<agent>:<name>`, the key shape the gateways use."""
    return f"agent:{agent}:{name}"

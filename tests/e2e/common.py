"""What every part of the e2e harness shares: the release lines served, names, the error type."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENSURE_SCRIPT = REPO / "scripts" / "ensure-openclaw.sh"
#: every release line the real-gateway tests run (scripts/ensure-openclaw.sh installs them)
VERSIONS = ("2026.9.6", "2026.3.24")
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

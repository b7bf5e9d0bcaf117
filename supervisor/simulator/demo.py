"""Demo and benchmark fleets of simulated gateways, with the fleet file that points at them."""

from __future__ import annotations

from pathlib import Path

from supervisor.simulator.gateway import SimGateway, Version
from supervisor.simulator.server import SimulatorServer

DEMO_TOKEN = "demo-token-not-secret"


def populate_demo(server: SimulatorServer) -> None:
    """Two gateways, one of each version, each holding zombies, live runs and idle sessions."""
    for name, version in (
        ("demo-2026-9-6", Version.V2026_9_6),
        ("demo-2026-3-24", Version.V2026_3_24),
    ):
        gw = server.add(SimGateway(name, version=version, token=DEMO_TOKEN))
        gw.add_zombie("agent:main:zombie-1", age_s=7 * 86400)
        gw.add_zombie("agent:support:zombie-2", age_s=3 * 3600)
        gw.add_live("agent:research:long-tool-call", age_s=14 * 60)
        gw.add_live("agent:main:chat", age_s=20)
        gw.add_idle("agent:main:finished")
        gw.add_idle("agent:support:new", status=None)


def populate_tour(server: SimulatorServer) -> None:
    """The demo pair, plus a gateway whose token lacks operator.admin: its zombie cannot be
    reset (nor cleared with /new), so it is escalated and paged (the README's tour)."""
    populate_demo(server)
    gw = server.add(
        SimGateway("demo-no-admin", version=Version.V2026_9_6, token=DEMO_TOKEN, grant_admin=False)
    )
    gw.add_zombie("agent:main:stuck", age_s=2 * 86400)
    gw.add_idle("agent:main:finished")


def populate_bulk(
    server: SimulatorServer,
    gateways: int,
    sessions: int,
    zombie_share: float = 0.01,
    version: Version = Version.V2026_9_6,
    prefix: str = "sim",
) -> None:
    """Many gateways, each with `sessions` rows of which `zombie_share` are zombies."""
    zombies = round(sessions * zombie_share)
    for g in range(gateways):
        gw = server.add(SimGateway(f"{prefix}-{g:05d}", version=version, token=DEMO_TOKEN))
        for i in range(sessions):
            key = f"agent:main:s{i:05d}"
            if i < zombies:
                gw.add_zombie(key)
            elif i % 10 == 1:
                gw.add_live(key)
            else:
                gw.add_idle(key)


def write_fleet(
    server: SimulatorServer,
    directory: Path,
    *,
    stale_after: str = "20m",
    extra: str = "",
    tail: str = "",
) -> Path:
    """A fleet file (and its token file) for every gateway the server holds.

    `extra` goes into [defaults]; `tail` after the gateways (e.g. a [paging] table)."""
    directory.mkdir(parents=True, exist_ok=True)
    token_file = directory / "simulator.token"
    token_file.write_text(DEMO_TOKEN + "\n")
    token_file.chmod(0o600)
    lines = ["[defaults]", f'stale_after = "{stale_after}"', extra, ""]
    for name in server.gateways:
        lines += [
            "[[gateways]]",
            f'name = "{name}"',
            f'url = "{server.url(name)}"',
            f'token_file = "{token_file.name}"',
            "",
        ]
    path = directory / "fleet.toml"
    path.write_text("\n".join(lines) + tail)
    return path

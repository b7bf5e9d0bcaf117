"""Engines on the shared real valkey (`store`) and a threaded simulator, one key prefix per test."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from supervisor.gateway.identity import DeviceIdentity
from supervisor.recovery.context import Engine, FleetSource
from supervisor.simulator import SimGateway, SimulatorServer, Version
from supervisor.simulator.demo import DEMO_TOKEN, write_fleet
from supervisor.state import StateStore


@dataclass
class RecordingPager:
    """Records triggers and resolves, as a paging provider would receive them."""

    triggers: list[tuple[str, str]] = field(default_factory=list)
    resolves: list[str] = field(default_factory=list)
    #: the details of each trigger, in order
    details: list[dict[str, object]] = field(default_factory=list)

    def trigger(
        self,
        dedup_key: str,
        *,
        gateway: str,
        key: str | None,
        kind: str,
        details: dict[str, object],
    ) -> None:
        self.triggers.append((dedup_key, kind))
        self.details.append(details)

    def resolve(self, dedup_key: str, *, gateway: str, key: str | None) -> None:
        self.resolves.append(dedup_key)

    def silenced(self, gateway: str, key: str | None = None) -> None:
        return None

    def run(self, delivery: object) -> None:
        return None

    def tick(self) -> tuple[()]:
        return ()


@dataclass
class Rig:
    """A simulator, a fleet file pointing at it, and engines sharing one store."""

    sim: SimulatorServer
    store: StateStore
    identity: DeviceIdentity
    directory: Path
    pager: RecordingPager = field(default_factory=RecordingPager)

    def gateway(self, name: str, version: str = "2026.9.6", **kw: object) -> SimGateway:
        gw = SimGateway(name, version=Version(version), token=DEMO_TOKEN, **kw)  # type: ignore[arg-type]
        return self.sim.add(gw)

    def engine(
        self,
        extra: str = "",
        *,
        dry_run: bool = False,
        stale_after: str = "0s",
        lease_ttl_s: float = 30,
    ) -> Engine:
        # attempts may follow each other at once unless a test sets its own backoff
        defaults = "" if "backoff_base" in extra else 'backoff_base = "0s"\n'
        path = write_fleet(
            self.sim, self.directory, stale_after=stale_after, extra=defaults + extra
        )
        return Engine(
            FleetSource(path).get,
            self.store,
            self.identity,
            lease_ttl_s=lease_ttl_s,
            verify_delay_s=0,
            dry_run=dry_run,
            pager=self.pager,
        )


@pytest.fixture
def rig(
    threaded_sim: SimulatorServer, store: StateStore, identity: DeviceIdentity, tmp_path: Path
) -> Rig:
    return Rig(sim=threaded_sim, store=store, identity=identity, directory=tmp_path / "fleet")

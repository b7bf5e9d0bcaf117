"""Independent real gateways on demand, every one stopped and checked gone at the end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.common import HarnessError
from tests.e2e.fake_model import FakeModelServer
from tests.e2e.install import OpenClawInstall
from tests.e2e.recipes import RealGateway
from tests.e2e.tagging import RUN_TAG, kill_tagged, leftover_processes


class GatewayFactory:
    """Makes independent gateways (own HOME, port and, unless given, own fake model) and stops
    every one of them at `close()`, checking that no process of theirs is left."""

    def __init__(self, install: OpenClawInstall, make_root: Callable[[str], Path]) -> None:
        self.install = install
        self._make_root = make_root
        self.gateways: list[RealGateway] = []
        self._own_models: list[FakeModelServer] = []

    def __call__(
        self,
        version: str,
        *,
        model: FakeModelServer | None = None,
        start: bool = True,
        **options: Any,
    ) -> RealGateway:
        """A new gateway of `version`, started unless `start=False` (options: RealGateway's)."""
        if model is None:
            model = FakeModelServer().start()
            self._own_models.append(model)
        gateway = RealGateway(
            self.install, version, self._make_root(f"gw-{version}"), model, **options
        )
        self.gateways.append(gateway)
        if start:
            gateway.start()
        return gateway

    def close(self) -> None:
        """Stop every gateway and fake; raise if any gateway process survived."""
        try:
            for gateway in self.gateways:
                gateway.stop()
        finally:
            for model in self._own_models:
                model.close()
            leftovers = leftover_processes()
            if leftovers:
                kill_tagged(f"{RUN_TAG}/")
                raise HarnessError(f"gateway processes were left running: {leftovers}")

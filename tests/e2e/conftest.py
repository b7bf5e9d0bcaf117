"""Fixtures for end-to-end tests against real openclaw gateways (the harness: see __init__.py).

Node and openclaw come from scripts/ensure-openclaw.sh (`./dev test` runs it first); when they
are missing the tests fail and say so, they are never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.common import OpenClawMissing
from tests.e2e.factory import GatewayFactory
from tests.e2e.install import OpenClawInstall
from tests.e2e.tagging import install_sigterm_cleanup


@pytest.fixture(scope="session")
def openclaw_install() -> OpenClawInstall:
    """Node and both openclaw versions, or a failure that says what to run."""
    try:
        return OpenClawInstall.locate()
    except OpenClawMissing as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def real_gateways(
    openclaw_install: OpenClawInstall, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayFactory]:
    """`real_gateways(version, **options) -> RealGateway`: a fresh, started, independent gateway
    (own HOME, port and fake model). All are killed at the end of the session, and the session
    errors if any of their processes outlived them."""
    install_sigterm_cleanup()
    factory = GatewayFactory(openclaw_install, lambda name: tmp_path_factory.mktemp(name))
    try:
        yield factory
    finally:
        factory.close()

"""The CLI starts at once because each command imports only what it needs.

These tests assert on what a fresh interpreter has imported, never on time: a module that
comes back into `--help` or into a fleet load is a regression whatever the machine's speed.
(The timings themselves are `python -m bench.startup`, reported in BENCHMARKS.md.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.simulator import SimGateway, SimulatorServer
from supervisor.simulator.demo import DEMO_TOKEN, write_fleet

#: what no command needs before it runs (Celery, paging, Redis, and the rest of the heavy stack)
NEVER_AT_START = ("celery", "kombu", "redbeat", "redis", "httpx", "flower", "prometheus_client")
#: what `--help` does not need either
NOT_FOR_HELP = (
    *NEVER_AT_START,
    "rich",
    "pydantic",
    "pydantic_settings",
    "websockets",
    "cryptography",
    "asyncio",
    "supervisor.fleet",
    "supervisor.settings",
    "supervisor.escalation",
)
#: what a read-only `check --json` does not need (no table, no paging, no state)
NOT_FOR_CHECK_JSON = (
    *NEVER_AT_START,
    "rich",
    "supervisor.escalation.dispatch",
    "supervisor.escalation.incidents",
    "supervisor.state",
    "supervisor.recovery",
)
#: what `check` with its table does not need
NOT_FOR_CHECK = (*NEVER_AT_START, "rich.progress", "rich.live", "supervisor.recovery")

PROBE = """
import json, sys
from supervisor.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.stdout.flush()
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def modules_after(*argv: str, state: Path) -> set[str]:
    """Every module a fresh interpreter holds after running `lane-supervisor ARGV`."""
    env = {**os.environ, "SUPERVISOR_STATE_DIR": str(state)}
    env.pop("SUPERVISOR_FLEET", None)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def loaded(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    """The forbidden packages (or any of their submodules) that were imported."""
    return sorted(
        name for name in forbidden if any(m == name or m.startswith(name + ".") for m in modules)
    )


def test_help_imports_neither_the_stack_nor_the_fleet_models(tmp_path: Path) -> None:
    modules = modules_after("--help", state=tmp_path)
    assert "supervisor.cli" in modules
    assert loaded(modules, NOT_FOR_HELP) == []


@pytest.mark.parametrize("command", ["check", "heal", "status", "audit", "up", "simulate"])
def test_command_help_imports_only_what_typer_needs(command: str, tmp_path: Path) -> None:
    # typer (>= 0.16) validates parameters through pydantic TypeAdapters: pydantic itself is
    # typer's cost once a command is named, nothing of ours is
    forbidden = tuple(m for m in NOT_FOR_HELP if m != "pydantic")
    assert loaded(modules_after(command, "--help", state=tmp_path), forbidden) == []


PAGING = """
[paging.providers.hooks]
type = "webhook"
url = "https://hooks.example.com/lane"

[paging.default_route]
providers = ["hooks"]
"""


def test_loading_a_fleet_with_paging_imports_no_http_or_redis_client(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        '[[gateways]]\nname = "a"\nurl = "ws://127.0.0.1:1"\ntoken_env = "T"\n' + PAGING
    )
    code = (
        "import sys; from supervisor.fleet import load_fleet;"
        f"assert load_fleet({str(fleet)!r}).paging.providers;"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "T": "token"},
    )
    assert loaded(set(out.stdout.split()), NEVER_AT_START) == []


@pytest.fixture
def one_gateway(tmp_path: Path) -> Iterator[Path]:
    server = SimulatorServer()
    gw = server.add(SimGateway("solo", version="2026.9.6", token=DEMO_TOKEN))
    gw.add_idle("agent:dev:idle")
    gw.add_zombie("agent:dev:zombie")
    with server.running():
        yield write_fleet(server, tmp_path / "fleet", stale_after="0s")


def test_check_json_imports_no_table_paging_or_state(one_gateway: Path, tmp_path: Path) -> None:
    modules = modules_after("check", "--json", "--fleet", str(one_gateway), state=tmp_path)
    assert "supervisor.scan" in modules  # it did scan
    assert loaded(modules, NOT_FOR_CHECK_JSON) == []


def test_check_imports_only_the_table(one_gateway: Path, tmp_path: Path) -> None:
    modules = modules_after("check", "--fleet", str(one_gateway), state=tmp_path)
    assert "rich.table" in modules
    assert loaded(modules, NOT_FOR_CHECK) == []

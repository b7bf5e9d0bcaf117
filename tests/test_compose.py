"""compose.yaml against the project: commands that exist, variables that are settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from supervisor.cli import app as cli
from supervisor.queues import ACT_QUEUE, PAGE_QUEUE, QUEUES
from supervisor.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
#: variables compose may set that are not SUPERVISOR_ settings, and who reads them
FOREIGN = {"FLOWER_BASIC_AUTH": "flower"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def cli_commands() -> set[str]:
    group = typer.main.get_command(cli)
    return set(group.commands)  # type: ignore[attr-defined]


def test_every_service_command_exists(compose: dict[str, Any]) -> None:
    commands = cli_commands()
    for name, service in compose["services"].items():
        argv = list(service.get("entrypoint") or []) + list(service.get("command") or [])
        if name == "redis":
            assert argv[0] == "valkey-server"
            continue
        if argv[0] == "celery":
            assert argv[1:3] == ["-A", "supervisor.app"], name
            assert argv[3] in {"worker", "beat", "flower"}, name
        else:
            assert argv[0] == "lane-supervisor", name
            assert argv[1] in commands | {"--help"}, f"{name}: no command {argv[1]!r}"


def test_every_variable_is_a_known_setting(compose: dict[str, Any]) -> None:
    known = {f"SUPERVISOR_{field.upper()}" for field in Settings.model_fields}
    for name, service in compose["services"].items():
        for var in service.get("environment") or {}:
            assert var in known or var in FOREIGN, f"{name}: {var} is not a setting"


def test_redis_keeps_what_the_supervisor_writes(compose: dict[str, Any]) -> None:
    argv = compose["services"]["redis"]["command"]
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert argv[argv.index("--appendfsync") + 1] in {"everysec", "always"}
    assert argv[argv.index("--maxmemory-policy") + 1] == "noeviction"


def worker_queues(compose: dict[str, Any]) -> dict[str, set[str]]:
    """Worker service -> the queues it consumes (every queue when it names none)."""
    out: dict[str, set[str]] = {}
    for name, service in compose["services"].items():
        argv = list(service.get("command") or [])
        if argv[:4] != ["celery", "-A", "supervisor.app", "worker"]:
            continue
        given = [a.removeprefix("--queues=") for a in argv if a.startswith("--queues=")]
        out[name] = set(given[0].split(",")) if given else set(QUEUES)
    return out


def test_steps_and_pages_have_consumers_of_their_own(compose: dict[str, Any]) -> None:
    workers = worker_queues(compose)
    assert set().union(*workers.values()) == set(QUEUES)
    # steps: some worker takes them and no scans, so a scan backlog cannot hold them
    assert any(qs == {ACT_QUEUE} for qs in workers.values())
    # pages: every consumer of the page queue takes nothing else, so a slow provider holds
    # no scan and no step
    assert all(qs == {PAGE_QUEUE} for qs in workers.values() if PAGE_QUEUE in qs)
    hostnames = [
        a for s in compose["services"].values() for a in s.get("command") or []
        if str(a).startswith("--hostname=")
    ]  # fmt: skip
    assert len(hostnames) == len(set(hostnames)) == len(workers)


def test_workers_scale_and_web_ports_stay_on_loopback(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N works
    for name in ("flower", "metrics"):
        for port in compose["services"][name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), f"{name} exposed beyond loopback"
    assert "--basic-auth" not in " ".join(compose["services"]["flower"]["command"])


def test_redis_requires_the_password_from_env_never_on_a_command_line(
    compose: dict[str, Any],
) -> None:
    redis_service = compose["services"]["redis"]
    argv = redis_service["command"]
    assert argv[0] == "valkey-server"
    target = redis_service["configs"][0]["target"]
    assert argv[1] == target  # the config file, first
    assert redis_service["configs"][0]["source"] == "redis-auth"
    content = compose["configs"]["redis-auth"]["content"]
    assert content.strip().startswith("requirepass ${REDIS_PASSWORD")
    everything = " ".join(
        str(a) for s in compose["services"].values() for a in s.get("command") or []
    )
    assert "requirepass" not in everything and "REDIS_PASSWORD" not in everything
    assert "REDIS_PASSWORD" not in " ".join(redis_service["healthcheck"]["test"])
    url = compose["x-supervisor"]["environment"]["SUPERVISOR_REDIS_URL"]
    assert url.startswith("redis://:${REDIS_PASSWORD")

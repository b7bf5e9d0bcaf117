"""Escalation through the engine: one trigger per provider, one resolve, retries, silences.

The ladder runs inline (as `heal` does) against the simulator, a real valkey and a real HTTP
server on loopback that records what the providers receive.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.recovery.context import Engine
from supervisor.recovery.runtime import build_engine, run_ladder
from supervisor.settings import Settings
from supervisor.simulator import SimGateway, SimulatorServer, Version
from supervisor.simulator.demo import DEMO_TOKEN
from tests.support.fixtures import delete_prefix
from tests.support.paging import CANARIES, Recorder, Reply, environ, slack_path

PAGING = """
[paging]
renotify_interval = "4h"
[paging.retry]
max_tries = 4
base = "0.05s"
cap = "0.2s"
jitter = 0
timeout = "5s"
[paging.providers.pd]
type = "pagerduty"
base_url = "{base}"
routing_key_env = "PD_KEY"
[paging.providers.hook]
type = "webhook"
url_env = "HOOK_URL"
hmac_secret_env = "HOOK_SECRET"
[paging.providers.chat]
type = "slack"
webhook_url_env = "SLACK_URL"
min_interval = "0s"
[paging.default_route]
providers = ["pd", "hook", "chat"]
"""


@pytest.fixture
def stuck(threaded_sim: SimulatorServer) -> SimGateway:
    # a token whose operator role lacks operator.admin: reset and /new both fail to clear it
    gw = threaded_sim.add(
        SimGateway("gw", version=Version.V2026_9_6, token=DEMO_TOKEN, grant_admin=False)
    )
    gw.add_zombie("agent:main:stuck")
    return gw


@pytest.fixture
def engine(
    threaded_sim: SimulatorServer,
    http: Recorder,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Engine]:
    for name, value in environ(http).items():
        monkeypatch.setenv(name, value)
    (tmp_path / "token").write_text(DEMO_TOKEN)
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(
        '[defaults]\nstale_after = "0s"\nmax_attempts = 2\nbackoff_base = "0s"\n\n'
        f'[[gateways]]\nname = "gw"\nurl = "{threaded_sim.url("gw")}"\ntoken_file = "token"\n'
        + PAGING.format(base=http.url)
    )
    settings = Settings(state_dir=tmp_path / "state", key_prefix=prefix, verify_delay_s=0)
    built = build_engine(settings, redis_url, fleet_path=fleet)
    try:
        yield built
    finally:
        delete_prefix(built.store)
        built.store.close()


def events(http: Recorder) -> dict[str, list[tuple[str, str]]]:
    """Per provider: (action, dedup key) of every request it received."""
    out: dict[str, list[tuple[str, str]]] = {"pd": [], "hook": [], "chat": []}
    for r in http.requests:
        if r.path == "/v2/enqueue":
            body = r.json()
            out["pd"].append((body["event_action"], body["dedup_key"]))
        elif r.path == "/hook":
            body = r.json()
            out["hook"].append((body["status"], body["groupKey"]))
        elif r.path == slack_path():
            out["chat"].append(("message", r.json()["text"][:40]))
    return out


def escalate(engine: Engine) -> None:
    for _ in range(3):  # two ineffective attempts, then the escalation
        run_ladder(engine, "gw")


def test_one_trigger_per_provider_then_one_resolve(
    engine: Engine, stuck: SimGateway, http: Recorder, threaded_sim: SimulatorServer
) -> None:
    escalate(engine)
    for _ in range(10):  # the same stuck condition, scan after scan
        run_ladder(engine, "gw")
    seen = events(http)
    assert seen["pd"] == [("trigger", "gw/agent:main:stuck")]
    assert [s for s, _ in seen["hook"]] == ["firing"]
    assert len(seen["chat"]) == 1
    assert stuck.mutation_count("agent:main:stuck", "sessions.reset") == 0  # never granted
    # on 2026.9.6 /new needs operator.admin too: nothing is sent that could not clear the lane
    assert stuck.mutation_count("agent:main:stuck", "sessions.send") == 0
    # someone clears the session by hand: the next scan resolves, once, on every provider
    threaded_sim.call(stuck._clear, stuck.sessions["agent:main:stuck"])
    run_ladder(engine, "gw")
    run_ladder(engine, "gw")
    seen = events(http)
    assert seen["pd"] == [("trigger", "gw/agent:main:stuck"), ("resolve", "gw/agent:main:stuck")]
    assert [s for s, _ in seen["hook"]] == ["firing", "resolved"]
    assert seen["hook"][0][1] == seen["hook"][1][1]  # same group key: same incident
    assert len(seen["chat"]) == 2
    audit = engine.store.audit.read(1000)
    assert sum(1 for r in audit if r.step == "page" and r.outcome == "ok") == 6
    for record in audit:
        assert not any(c in (record.detail or "") for c in CANARIES)


def test_a_503_is_retried_until_it_succeeds_and_a_400_is_not(
    engine: Engine, stuck: SimGateway, http: Recorder
) -> None:
    http.script("/v2/enqueue", Reply(503), Reply(503))
    http.script("/hook", Reply(400, b'{"error":"bad"}'))
    escalate(engine)
    assert [r.json()["event_action"] for r in http.to("/v2/enqueue")] == ["trigger"] * 3
    assert len(http.to("/hook")) == 1  # 400: not retried
    (incident,) = engine.store.incidents.list_open()
    assert incident.deliveries["pd"].state == "ok"
    assert incident.deliveries["hook"].state != "ok"
    outcomes = {(r.detail or "").split(" via ")[-1].split(":")[0]: r.outcome for r in
                engine.store.audit.read(1000) if r.step == "page"}  # fmt: skip
    assert outcomes["pd"] == "ok" and outcomes["hook"] == "permanent"


def test_a_session_silence_with_actions_stops_recovery_and_paging(
    engine: Engine, stuck: SimGateway, http: Recorder
) -> None:
    engine.store.silences.silence("gw/agent:main:stuck", 60, "maintenance", also_actions=True)
    escalate(engine)
    assert stuck.mutations == []
    assert http.requests == []


def test_clear_resolves_the_incident_and_a_later_heal_leaves_nothing_open(
    engine: Engine,
    stuck: SimGateway,
    http: Recorder,
    threaded_sim: SimulatorServer,
    redis_url: str,
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`clear` closes the episode the one way verify and the scan do: before, it dropped the
    escalation marker without resolving, and the incident stayed open until its TTL."""
    from typer.testing import CliRunner

    from supervisor.cli import app

    escalate(engine)
    assert events(http)["pd"] == [("trigger", "gw/agent:main:stuck")]
    monkeypatch.setenv("SUPERVISOR_REDIS_URL", redis_url)
    monkeypatch.setenv("SUPERVISOR_KEY_PREFIX", prefix)
    monkeypatch.setenv("SUPERVISOR_FLEET", str(tmp_path / "fleet.toml"))
    monkeypatch.setenv("SUPERVISOR_STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(app, ["clear", "gw", "agent:main:stuck"])
    assert result.exit_code == 0, result.output
    seen = events(http)
    assert seen["pd"] == [("trigger", "gw/agent:main:stuck"), ("resolve", "gw/agent:main:stuck")]
    assert engine.store.incidents.list_open() == []
    # it gets fixed by hand afterwards: nothing is left open, nothing resolved twice
    threaded_sim.call(stuck._clear, stuck.sessions["agent:main:stuck"])
    run_ladder(engine, "gw")
    assert events(http)["pd"] == seen["pd"]
    assert engine.store.episodes.open_episodes("gw") == {}

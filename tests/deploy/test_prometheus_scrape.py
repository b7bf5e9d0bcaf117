"""A real Prometheus scrapes a real `lane-supervisor up` (basic auth), loads deploy/prometheus/
rules.yml, and answers every query of the Grafana dashboard without error, with data.

The fleet: the README tour's simulated gateways (zombies that heal, one that escalates for lack
of operator.admin), plus one gateway that never approves the device (not_paired) and one whose
port is closed (unreachable), so that approval-pending, unreachable and escalation alerts fire
for real. OpenClaw's own series (openclaw_session_*) are not scraped here: those queries must
succeed, empty.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from supervisor.simulator import SimulatorServer
from supervisor.simulator.demo import DEMO_TOKEN, populate_tour, write_fleet
from supervisor.simulator.gateway import SimGateway, Version
from tests.deploy.conftest import REPO, PrometheusBins
from tests.support.procs import base_env, free_port, process, wait_for

pytestmark = pytest.mark.integration

DASHBOARD = REPO / "deploy" / "grafana" / "lane-supervisor.json"
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
PASSWORD = "metrics-canary-0b7e41"
#: Grafana's variables, as a dashboard with "All" gateways would send them
VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$gateway": ".*",
    "${gateway}": ".*",
}
#: alerts the fleet above makes fire (no `for:` on these: firing at the first evaluation)
EXPECTED_FIRING = {
    ("LaneSupervisorApprovalPending", "demo-unpaired"),
    ("LaneSupervisorGatewayUnreachable", "demo-down"),
    ("LaneSupervisorSessionEscalated", ""),
}


def panel_queries() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text())
    out: list[tuple[str, str]] = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            out.append((f"{panel['title']} / {target['refId']}", target["expr"]))
    return out


def expand(expr: str) -> str:
    for name, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


def uses_only_openclaw_series(expr: str) -> bool:
    names = set(re.findall(r"\b((?:lane_supervisor|openclaw)_[a-z_]+)\b", expr))
    return bool(names) and all(n.startswith("openclaw_") for n in names)


@pytest.fixture
def tour() -> Iterator[SimulatorServer]:
    server = SimulatorServer()
    populate_tour(server)
    # the session that escalates comes later: Prometheus must see its counter at 0 first (a
    # series born at 1 shows no increase), and under load the first scrape can come late
    server.gateways["demo-no-admin"].sessions.pop("agent:main:stuck")
    with server.running():
        yield server


@pytest.fixture
def fleet(tour: SimulatorServer, tmp_path: Path) -> Iterator[Path]:
    server = tour
    unpaired = server.add(
        SimGateway(
            "demo-unpaired", version=Version.V2026_3_24, token=DEMO_TOKEN,
            auto_approve_devices=False,
        )
    )  # fmt: skip
    unpaired.add_idle("agent:main:finished")
    path = write_fleet(
        server,
        tmp_path / "fleet",
        extra='scan_interval = "2s"\nmax_attempts = 1\nbackoff_base = "2s"\nunreachable_after = 2',
        tail=(
            f'[[gateways]]\nname = "demo-down"\nurl = "ws://127.0.0.1:{free_port()}"\n'
            'token_file = "simulator.token"\n'
        ),
    )
    yield path


def prometheus_config(tmp_path: Path, metrics_port: int) -> Path:
    secret = tmp_path / "scrape-password"
    secret.write_text(PASSWORD)
    secret.chmod(0o600)
    target = f"127.0.0.1:{metrics_port}"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n"
        "  - job_name: lane-supervisor\n"
        f"    basic_auth: {{username: metrics, password_file: '{secret}'}}\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
        # the same target without credentials: the exporter must refuse it
        "  - job_name: lane-supervisor-noauth\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    return config


def api(port: int, path: str, **params: str) -> dict[str, Any]:
    r = httpx.get(f"http://127.0.0.1:{port}/api/v1/{path}", params=params, timeout=10)
    doc: dict[str, Any] = r.json()
    return doc


def query(port: int, expr: str) -> dict[str, Any]:
    return api(port, "query", query=expr)


def firing(port: int) -> set[tuple[str, str]]:
    alerts = api(port, "alerts")["data"]["alerts"]
    return {
        (a["labels"]["alertname"], a["labels"].get("gateway", ""))
        for a in alerts
        if a["state"] == "firing"
    }


def test_dashboard_queries_and_alerts_against_a_real_prometheus(
    prom_bins: PrometheusBins, tmp_path: Path, fleet: Path, tour: SimulatorServer
) -> None:
    prom_port = free_port()
    metrics_port = free_port()
    config = prometheus_config(tmp_path, metrics_port)
    check = subprocess.run(
        [str(prom_bins.promtool), "check", "config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    prom_argv = [
        str(prom_bins.prometheus),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
        "--storage.tsdb.retention.time=1h",
    ]
    env = base_env(
        SUPERVISOR_STATE_DIR=str(tmp_path / "state"),
        SUPERVISOR_FLOWER_PORT=str(free_port()),
        SUPERVISOR_FLOWER_PASSWORD="flower-canary-77aa",
        SUPERVISOR_METRICS_PORT=str(metrics_port),
        SUPERVISOR_METRICS_PASSWORD=PASSWORD,
    )
    up_log = tmp_path / "up.log"
    with (
        process(prom_argv, base_env(), tmp_path / "prometheus.log"),
        process([sys.executable, "-m", "supervisor", "up", "--fleet", str(fleet)], env, up_log),
    ):
        wait_for(
            "prometheus ready",
            lambda: _ok(f"http://127.0.0.1:{prom_port}/-/ready"),
            30,
        )
        # Prometheus scrapes before the first escalation: the primed 0 is seen, then the 1
        primed = 'lane_supervisor_escalations_total{kind="session"} == 0'
        wait_for(
            "the escalation counter scraped at 0",
            lambda: query(prom_port, primed)["data"]["result"] or None,
            90,
            every=1,
        )
        no_admin = tour.gateways["demo-no-admin"]
        tour.call(lambda: no_admin.add_zombie("agent:main:stuck", age_s=2 * 86400))
        seen: set[tuple[str, str]] = set()

        def all_fired() -> bool | None:
            seen.update(firing(prom_port))
            return seen >= EXPECTED_FIRING or None

        try:
            wait_for("the expected alerts firing", all_fired, 90, every=1)
        except TimeoutError:
            pytest.fail(f"never fired: {sorted(EXPECTED_FIRING - seen)}; fired: {sorted(seen)}")
        targets = api(prom_port, "targets")["data"]["activeTargets"]
        health = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in targets}
        assert health["lane-supervisor"] == ("up", ""), health
        assert health["lane-supervisor-noauth"][0] == "down"
        assert "401" in health["lane-supervisor-noauth"][1], health

        # every rule evaluates without error
        groups = api(prom_port, "rules")["data"]["groups"]
        bad = [
            (r["name"], r.get("lastError"))
            for g in groups
            for r in g["rules"]
            if r.get("health") != "ok"
        ]
        assert bad == [], bad
        assert len([r for g in groups for r in g["rules"]]) == 16

        # the recording rules produce data
        for record in ("lane_supervisor:scan_lag_seconds", "lane_supervisor:collisions:total"):
            assert query(prom_port, record)["data"]["result"], record

        # every panel query: no error, and data unless it reads OpenClaw's series only
        failures = []
        for where, expr in panel_queries():
            doc = query(prom_port, expand(expr))
            if doc.get("status") != "success":
                failures.append(f"{where}: {doc.get('errorType')}: {doc.get('error')}")
            elif not doc["data"]["result"] and not uses_only_openclaw_series(expr):
                failures.append(f"{where}: no data for {expand(expr)}")
        assert failures == [], "\n".join(failures)
        # the check itself can fail: a broken query errors, a misspelled series has no data
        assert query(prom_port, "sum(rate(lane_supervisor_scans_total))")["status"] == "error"
        assert query(prom_port, "lane_supervisor_scan_total")["data"]["result"] == []

        # label policy: no session key reaches Prometheus
        keys = api(prom_port, "labels")["data"]
        assert not {"key", "session_id", "session_key", "run_id"} & set(keys), keys
        values = json.dumps(query(prom_port, '{__name__=~"lane_supervisor_.+"}'))
        assert "agent:main" not in values
    assert PASSWORD not in up_log.read_text()


def _ok(url: str) -> bool | None:
    try:
        return httpx.get(url, timeout=2).status_code == 200 or None
    except httpx.HTTPError:
        return None


def test_the_dashboard_has_openclaw_series_beside_ours() -> None:
    exprs = " ".join(e for _, e in panel_queries())
    assert "openclaw_session_stuck_total" in exprs
    assert "openclaw_session_recovery_total" in exprs
    assert re.search(r"by \(action, status\)[^\n]*openclaw_session_recovery_total", exprs)
    doc = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in doc["panels"]]
    assert len(titles) == len(set(titles)), "panel titles repeat"
    for panel in doc["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]

"""deploy/prometheus/rules.yml under the real promtool: valid, unit-tested, and able to fail."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy import promtool_cases
from tests.deploy.conftest import PrometheusBins

RULES = promtool_cases.RULES
TESTS = promtool_cases.TESTS
#: labels that would carry a session's identity (unbounded cardinality): never on a series
FORBIDDEN_LABELS = {"key", "session", "session_key", "session_id", "sessionid", "run_id", "runid"}


def promtool(bins: PrometheusBins, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bins.promtool), *args], capture_output=True, text=True, timeout=120, cwd=cwd,
        check=False,
    )  # fmt: skip


def test_rules_pass_promtool_check(prom_bins: PrometheusBins) -> None:
    done = promtool(prom_bins, "check", "rules", str(RULES), cwd=RULES.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_tests_yml_is_generated_from_the_cases() -> None:
    assert TESTS.read_text() == promtool_cases.text(), (
        "deploy/prometheus/tests.yml is out of date: python -m tests.deploy.promtool_cases --write"
    )


def test_promtool_unit_tests_pass(prom_bins: PrometheusBins) -> None:
    done = promtool(prom_bins, "test", "rules", TESTS.name, cwd=TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    alerts = set(promtool_cases.alert_rules())
    cases = [c for g in promtool_cases.GROUPS for c in g["cases"]]
    firing = {c["alertname"] for c in cases if c["fires"]}
    quiet = {c["alertname"] for c in cases if not c["fires"]}
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested quiet"
    assert {c["alertname"] for c in cases} <= alerts, "a case names no alert"
    required = {
        "LaneSupervisorSessionEscalated", "LaneSupervisorGatewayUnreachable",
        "LaneSupervisorZombieBreakerOpen", "LaneSupervisorCollision",
        "LaneSupervisorApprovalPending", "LaneSupervisorScanLag", "LaneSupervisorNoScans",
        "LaneSupervisorWorkerDown",
    }  # fmt: skip
    assert required <= alerts


def test_every_alert_has_severity_and_runbook_text() -> None:
    for name, rule in promtool_cases.alert_rules().items():
        assert rule["labels"]["severity"] in {"warning", "error", "critical"}, name
        notes = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(notes), name
        assert len(notes["runbook"]) > 80, f"{name}: the runbook says too little"


def test_no_rule_groups_or_matches_by_a_session_label() -> None:
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            used = set(re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", rule["expr"]))
            used |= set(re.findall(r"([a-z_]+)\s*=~?", rule["expr"]))
            names = {n.strip() for u in used for n in u.split(",")}
            assert not names & FORBIDDEN_LABELS, (rule.get("alert") or rule["record"], names)
            assert not set(rule.get("labels", {})) & FORBIDDEN_LABELS


# -- the unit tests can fail: with each mechanism turned off, promtool reports the alert -----

MUTATIONS = {
    # without `or vector(0)` the collision series is born at 1 and increase() never sees it
    "collision_series_not_primed": (
        'sum(lane_supervisor_actions_total{outcome="collided"}) or vector(0)',
        'sum(lane_supervisor_actions_total{outcome="collided"})',
        "LaneSupervisorCollision",
    ),
    "no_absent_for_worker_heartbeat": (
        "or absent(lane_supervisor_worker_heartbeat_timestamp_seconds)",
        "",
        "LaneSupervisorWorkerDown",
    ),
    "no_absent_for_scans": (
        "absent(lane_supervisor_scans_total) or ",
        "",
        "LaneSupervisorNoScans",
    ),
    "lag_ignores_the_interval": (
        "- max by (gateway) (lane_supervisor_scan_interval_seconds),",
        "- 10000,",
        "LaneSupervisorScanLag",
    ),
    "unreachable_matches_any_breaker": (
        '(lane_supervisor_breaker_open{breaker="unreachable"})',
        "(lane_supervisor_breaker_open)",
        "LaneSupervisorGatewayUnreachable",
    ),
    "approval_never_set": (
        "(lane_supervisor_gateway_approval_pending) == 1",
        "(lane_supervisor_gateway_approval_pending) == 2",
        "LaneSupervisorApprovalPending",
    ),
    "escalation_any_kind": (
        'increase(lane_supervisor_escalations_total{kind="session"}[30m])',
        "increase(lane_supervisor_escalations_total[30m])",
        "LaneSupervisorSessionEscalated",
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_promtool_fails_with_the_mechanism_off(
    prom_bins: PrometheusBins, tmp_path: Path, mutation: str
) -> None:
    old, new, alert = MUTATIONS[mutation]
    text = RULES.read_text()
    assert old in text, f"mutation {mutation} no longer applies"
    (tmp_path / "rules.yml").write_text(text.replace(old, new))
    shutil.copy(TESTS, tmp_path / "tests.yml")
    done = promtool(prom_bins, "test", "rules", "tests.yml", cwd=tmp_path)
    assert done.returncode != 0, f"{mutation}: promtool still passes"
    assert f"alertname: {alert}" in done.stdout + done.stderr, done.stdout + done.stderr

"""The `promtool test rules` cases for deploy/prometheus/rules.yml, and the generator of tests.yml.

promtool compares an alert's annotations exactly, so each expected alert must repeat the rule's
runbook text. Rather than copy it by hand, the cases live here (without annotations) and
`python -m tests.deploy.promtool_cases --write` writes deploy/prometheus/tests.yml, rendering
each rule's annotations for the expected labels; tests/deploy/test_prometheus_rules.py fails
when the file is out of date. Annotations may use `{{ $labels.NAME }}` only (a missing label
renders empty, as in Prometheus).

Every alert has at least one case where it fires and one where it does not (a test checks).
Series are sampled every minute; `0x3 1x40` is "0 for 3 minutes, then 1".
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
TESTS = REPO / "deploy" / "prometheus" / "tests.yml"
JOB = {"job": "lane-supervisor", "instance": "host-a:9808"}

Case = dict[str, Any]


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    all_labels = {**JOB, **labels}
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(all_labels.items()))
    return {"series": f"{name}{{{inner}}}", "values": values}


def fires(at: str, alert: str, *labelsets: dict[str, str]) -> Case:
    """`alert` is firing at `at` with exactly these label sets (severity is added)."""
    return {"eval_time": at, "alertname": alert, "fires": list(labelsets) or [{}]}


def quiet(at: str, alert: str) -> Case:
    """`alert` is not firing at `at` (pending counts as not firing)."""
    return {"eval_time": at, "alertname": alert, "fires": []}


GROUPS: list[dict[str, Any]] = [
    {
        "name": "escalations: a session escalated fires for 30 minutes; other kinds do not",
        "input_series": [
            # created at 0 at import (supervisor.metrics), so the first escalation is an increase
            series("lane_supervisor_escalations_total", "0x3 1x60", kind="session"),
            series("lane_supervisor_escalations_total", "0x60", kind="gateway_unreachable"),
            # another kind escalating later must not fire the session alert (quiet at 45m)
            series("lane_supervisor_escalations_total", "0x40 1x20", kind="redis_not_durable"),
        ],
        "cases": [
            quiet("2m", "LaneSupervisorSessionEscalated"),
            fires("10m", "LaneSupervisorSessionEscalated"),
            quiet("45m", "LaneSupervisorSessionEscalated"),
            quiet("15m", "LaneSupervisorRedisNotDurable"),
            fires("45m", "LaneSupervisorRedisNotDurable"),
        ],
    },
    {
        "name": "breakers: unreachable and zombies are told apart, per gateway",
        "input_series": [
            series(
                "lane_supervisor_breaker_open", "0x5 1x10", gateway="gw-a", breaker="unreachable"
            ),
            series("lane_supervisor_breaker_open", "0x15", gateway="gw-a", breaker="zombies"),
            series("lane_supervisor_breaker_open", "0x6 1x9", gateway="gw-b", breaker="zombies"),
            series("lane_supervisor_breaker_open", "0x15", gateway="gw-b", breaker="unreachable"),
        ],
        "cases": [
            quiet("3m", "LaneSupervisorGatewayUnreachable"),
            fires("8m", "LaneSupervisorGatewayUnreachable", {"gateway": "gw-a"}),
            quiet("3m", "LaneSupervisorZombieBreakerOpen"),
            fires("8m", "LaneSupervisorZombieBreakerOpen", {"gateway": "gw-b"}),
        ],
    },
    {
        "name": "collisions: the first collided step (a series born at 1) fires for 15 minutes",
        "input_series": [
            series("lane_supervisor_actions_total", "0+1x40", step="verify", outcome="healed"),
            series("lane_supervisor_actions_total", "_x5 1x35", step="reset", outcome="collided"),
        ],
        "cases": [
            quiet("3m", "LaneSupervisorCollision"),
            fires("7m", "LaneSupervisorCollision"),
            quiet("30m", "LaneSupervisorCollision"),
        ],
    },
    {
        "name": "approval pending: while the gateway answers not_paired",
        "input_series": [
            series("lane_supervisor_gateway_approval_pending", "0x3 1x5 0x5", gateway="gw-c"),
            series("lane_supervisor_gateway_approval_pending", "0x13", gateway="gw-d"),
        ],
        "cases": [
            quiet("2m", "LaneSupervisorApprovalPending"),
            fires("5m", "LaneSupervisorApprovalPending", {"gateway": "gw-c"}),
            quiet("11m", "LaneSupervisorApprovalPending"),
        ],
    },
    {
        "name": "scan lag: a gateway whose scans stop at 5m is late from 6.5m, alerts 5m later",
        "input_series": [
            # the last-scan stamp is the sample time while scans happen every minute
            series("lane_supervisor_last_scan_timestamp_seconds", "0+60x30", gateway="fast"),
            series("lane_supervisor_scan_interval_seconds", "60x30", gateway="fast"),
            series("lane_supervisor_last_scan_timestamp_seconds", "0+60x5 300x25", gateway="slow"),
            series("lane_supervisor_scan_interval_seconds", "60x30", gateway="slow"),
            series("lane_supervisor_scans_total", "0+1x30", gateway="fast", outcome="ok"),
            series("lane_supervisor_worker_heartbeat_timestamp_seconds", "0+60x30", host="h1"),
        ],
        "cases": [
            quiet("10m", "LaneSupervisorScanLag"),
            fires("13m", "LaneSupervisorScanLag", {"gateway": "slow"}),
            quiet("20m", "LaneSupervisorNoScans"),
            quiet("20m", "LaneSupervisorWorkerDown"),
        ],
    },
    {
        "name": "nothing at all: no scans series and no worker heartbeat (absent)",
        "input_series": [
            series("up", "1x10"),
        ],
        "cases": [
            quiet("3m", "LaneSupervisorNoScans"),
            fires("6m", "LaneSupervisorNoScans"),
            quiet("1m", "LaneSupervisorWorkerDown"),
            fires("6m", "LaneSupervisorWorkerDown"),
            quiet("6m", "LaneSupervisorMetricsDown"),
        ],
    },
    {
        "name": "scans stop growing: no increase for 10m, for 5m",
        "input_series": [
            series("lane_supervisor_scans_total", "0+1x10 10x30", gateway="gw-a", outcome="ok"),
        ],
        "cases": [
            quiet("18m", "LaneSupervisorNoScans"),
            fires("27m", "LaneSupervisorNoScans"),
        ],
    },
    {
        "name": "worker down: the host whose heartbeat stops at 5m, 2m after it is 60s stale",
        "input_series": [
            series("lane_supervisor_worker_heartbeat_timestamp_seconds", "0+60x30", host="h1"),
            series(
                "lane_supervisor_worker_heartbeat_timestamp_seconds", "0+60x5 300x25", host="h2"
            ),
        ],
        "cases": [
            quiet("6m", "LaneSupervisorWorkerDown"),
            fires("10m", "LaneSupervisorWorkerDown", {"host": "h2"}),
        ],
    },
    {
        "name": "metrics down: the lane-supervisor job's target, for 2m; other jobs ignored",
        "input_series": [
            {"series": 'up{job="lane-supervisor", instance="host-a:9808"}', "values": "1x3 0x10"},
            {"series": 'up{job="other", instance="host-b:9100"}', "values": "0x13"},
        ],
        "cases": [
            quiet("2m", "LaneSupervisorMetricsDown"),
            quiet("4m", "LaneSupervisorMetricsDown"),
            fires(
                "8m",
                "LaneSupervisorMetricsDown",
                {"job": "lane-supervisor", "instance": "host-a:9808"},
            ),
        ],
    },
]

_LABEL_REF = re.compile(r"\{\{\s*\$labels\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def alert_rules() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return {
        rule["alert"]: rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule
    }


def render(template: str, labels: dict[str, str]) -> str:
    out = _LABEL_REF.sub(lambda m: labels.get(m.group(1), ""), template)
    if "{{" in out:
        raise ValueError(f"annotation uses more than {{{{ $labels.NAME }}}}: {template!r}")
    return out


def expected_alert(rule: dict[str, Any], labels: dict[str, str]) -> dict[str, Any]:
    all_labels = {**labels, **rule.get("labels", {})}
    annotations = {k: render(v, all_labels) for k, v in rule.get("annotations", {}).items()}
    return {"exp_labels": all_labels, "exp_annotations": annotations}


def build() -> dict[str, Any]:
    rules = alert_rules()
    tests = []
    for group in GROUPS:
        alert_tests = []
        for case in group["cases"]:
            rule = rules[case["alertname"]]
            alert_tests.append(
                {
                    "eval_time": case["eval_time"],
                    "alertname": case["alertname"],
                    "exp_alerts": [expected_alert(rule, labels) for labels in case["fires"]],
                }
            )
        tests.append(
            {
                "name": group["name"],
                "interval": "1m",
                "input_series": group["input_series"],
                "alert_rule_test": alert_tests,
            }
        )
    return {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}


HEADER = (
    "# Generated by `python -m tests.deploy.promtool_cases --write` from\n"
    "# tests/deploy/promtool_cases.py (the cases) and rules.yml (the annotations): do not edit.\n"
    "# Run: promtool test rules deploy/prometheus/tests.yml\n"
)


def text() -> str:
    return HEADER + yaml.safe_dump(build(), sort_keys=False, width=100, allow_unicode=True)


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        TESTS.write_text(text())
        print(f"wrote {TESTS.relative_to(REPO)}")
        return 0
    sys.stdout.write(text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

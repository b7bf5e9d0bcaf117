"""The series the alerts need, recorded by supervisor.metrics in this process (default registry)."""

from __future__ import annotations

import os
import socket
import threading
import time

from prometheus_client import REGISTRY

from supervisor import heartbeat, metrics
from supervisor.scan import GatewayReport


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def report(name: str, kind: str | None = None) -> GatewayReport:
    return GatewayReport(
        name=name, url="ws://x", reachable=kind is None, error=kind and f"failed: {kind}",
        error_kind=kind, duration_ms=12.0,
    )  # fmt: skip


def test_escalation_kinds_exist_at_zero_before_any_escalation() -> None:
    # a counter born at 1 is invisible to increase(): the alerts rely on these zeros
    for kind in metrics.ESCALATION_KINDS:
        assert value("lane_supervisor_escalations_total", kind=kind) is not None, kind
        assert value("lane_supervisor_resolves_total", kind=kind) is not None, kind


def test_approval_pending_follows_not_paired_and_ignores_other_errors() -> None:
    gauge = "lane_supervisor_gateway_approval_pending"
    metrics.scanned(report("ops-pairing", "not_paired"))
    assert value(gauge, gateway="ops-pairing") == 1
    metrics.scanned(report("ops-pairing", "unreachable"))  # says nothing about pairing
    assert value(gauge, gateway="ops-pairing") == 1
    metrics.scanned(report("ops-pairing"))
    assert value(gauge, gateway="ops-pairing") == 0
    assert value("lane_supervisor_gateway_errors_total", gateway="ops-pairing", kind="not_paired")


def test_a_scan_stamps_its_time_and_interval_even_when_it_fails() -> None:
    before = time.time()
    metrics.scanned(report("ops-lag", "timeout"), interval_s=30.0)
    stamp = value("lane_supervisor_last_scan_timestamp_seconds", gateway="ops-lag")
    assert stamp is not None and before <= stamp <= time.time()
    assert value("lane_supervisor_scan_interval_seconds", gateway="ops-lag") == 30.0


def test_heartbeat_stamps_repeatedly_and_starts_once_per_process() -> None:

    stop = threading.Event()
    heartbeat._started.discard(os.getpid())
    try:
        assert heartbeat.start(0.05, stop=stop) is True
        assert heartbeat.start(0.05, stop=stop) is False
        name = "lane_supervisor_worker_heartbeat_timestamp_seconds"
        first = value(name, host=socket.gethostname())
        assert first is not None
        time.sleep(0.2)
        later = value(name, host=socket.gethostname())
        assert later is not None and later > first
    finally:
        stop.set()


def test_no_series_is_labelled_by_session() -> None:
    forbidden = {"key", "session", "session_key", "session_id", "run_id"}
    for metric in REGISTRY.collect():
        if metric.name.startswith("lane_supervisor"):
            for sample in metric.samples:
                assert not forbidden & set(sample.labels), sample

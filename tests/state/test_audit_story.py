"""A recovery's story one command away: the page names `lane-supervisor audit -g G -k K`, and
that command finds the session's records however many newer ones the stream holds.

Real valkey, the real CLI in a subprocess, and the command taken from the webhook payload the
page would carry. Flower keeps only its newest tasks; the audit stream (~100,000 records) is
where an older recovery is told.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.escalation.slack import build_message
from supervisor.escalation.webhook import build_payload
from supervisor.redis_server import EmbeddedRedis
from supervisor.state import AuditRecord, StateStore
from tests.support.paging import make_event
from tests.support.procs import base_env

pytestmark = pytest.mark.integration

GATEWAY, KEY = "prod-1", "agent:main:telegram:group:-100"
#: newer records of other sessions written after the early story: more than a default page of
#: `audit` (50) and more than the 1,000 it used to look back
NEWER = 5_000


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "valkey") as server:
        yield server


def test_the_page_names_a_command_that_tells_an_old_recovery(
    tmp_path: Path, valkey: EmbeddedRedis
) -> None:
    with StateStore.from_url(valkey.url) as store:
        story = [("abort", "no_active_run"), ("reset", "reset"), ("verify", "ineffective"),
                 ("escalate", "escalated")]  # fmt: skip
        for i, (step, outcome) in enumerate(story):
            record = AuditRecord(ts_ms=1_000 + i, gateway=GATEWAY, key=KEY, step=step,
                                 outcome=outcome, recovery_id="r-early")  # fmt: skip
            store.audit.append(record)
        store.audit.append(AuditRecord(ts_ms=2_000, gateway=GATEWAY, key="agent:main:other",
                                       step="abort", outcome="no_active_run"))  # fmt: skip
        pipe = store.audit._client.pipeline(transaction=False)  # bulk: one round trip
        for i in range(NEWER):
            pipe.xadd(store.audit._key, {"ts_ms": str(3_000 + i), "gateway": f"gw-{i % 50}",
                                         "key": f"agent:main:s{i}", "step": "scan",
                                         "outcome": "scanned"})  # fmt: skip
        pipe.execute()

    event = make_event()
    annotations = build_payload(event, receiver="ops")["alerts"][0]["annotations"]
    command = annotations["story"]
    assert command == f"lane-supervisor audit -g {GATEWAY} -k {KEY}"
    assert command in build_message(event)["text"]  # Slack carries it too

    argv = shlex.split(command)
    assert argv[0] == "lane-supervisor"
    run = subprocess.run(
        [sys.executable, "-m", "supervisor", *argv[1:], "--json"],
        env=base_env(SUPERVISOR_REDIS_URL=valkey.url, SUPERVISOR_STATE_DIR=str(tmp_path / "s")),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    records = json.loads(run.stdout)["records"]
    assert [(r["step"], r["outcome"]) for r in records] == story
    assert {(r["gateway"], r["key"], r["recovery_id"]) for r in records} == {
        (GATEWAY, KEY, "r-early")
    }


def test_a_gateway_incident_names_the_gateway_only() -> None:
    event = make_event(dedup_key="prod-1", key=None, kind="unreachable")
    assert event.story == "lane-supervisor audit -g prod-1"
    odd = make_event(gateway="gw; rm -rf x", dedup_key="gw; rm -rf x")
    assert shlex.split(odd.story)[3] == "gw; rm -rf x"  # quoted for a shell

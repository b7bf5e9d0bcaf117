"""Beat with a fleet file that breaks: the schedule stays, one log line, one audit record,
no byte of the secret anywhere (a real beat process, a real valkey)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.redis_server import EmbeddedRedis
from supervisor.state import StateStore
from tests.support.procs import base_env, celery, process, wait_for

pytestmark = pytest.mark.integration

CANARY = "canary-beat-hostile-7e21"
FLEET = '[[gateways]]\nname = "{name}"\nurl = "ws://127.0.0.1:9"\ntoken_file = "{token}"\n'


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "valkey") as server:
        yield server


def test_beat_keeps_its_schedule_when_the_fleet_breaks(
    tmp_path: Path, redis: EmbeddedRedis
) -> None:
    token = tmp_path / "token"
    token.write_text("good-token\n")
    token.chmod(0o600)
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET.format(name="kitchen", token=token))
    env = base_env(
        SUPERVISOR_REDIS_URL=redis.url,
        SUPERVISOR_FLEET=str(fleet),
        SUPERVISOR_STATE_DIR=str(tmp_path / "state"),
        SUPERVISOR_FLEET_RELOAD_S="0.5",
        SUPERVISOR_BEAT_MAX_LOOP_INTERVAL_S="0.5",
    )
    log = tmp_path / "beat.log"
    store = StateStore.from_url(redis.url)
    try:
        with process(celery("beat", "-l", "INFO"), env, log):
            wait_for("the scan entry", lambda: "scan entry scan:kitchen" in log.read_text(), 30)
            hostile = tmp_path / "hostile"
            hostile.write_bytes(CANARY.encode() + b"\xa0")
            # the gateway renamed and its token file broken in one edit: nothing of it applies
            fleet.write_text(FLEET.format(name="renamed", token=hostile))
            wait_for(
                "the audit record",
                lambda: [r for r in store.audit.read(100) if r.outcome == "fleet_broken"],
                30,
            )
            time.sleep(2)  # four more reload periods: still one line, one record
        text = log.read_text()
    finally:
        records = [r for r in store.audit.read(100) if r.outcome == "fleet_broken"]
        dump = b"".join(
            repr(store.client.dump(k)).encode() for k in store.client.scan_iter(count=500)
        )
        store.close()
    assert text.count("fleet file not reloaded") == 1, text
    assert "not valid UTF-8" in text
    assert len(records) == 1 and "beat keeps the current schedule" in str(records[0].detail)
    assert "removed scan entry" not in text and "scan:renamed" not in text
    assert "Traceback" not in text
    for where in (text, str(records), dump.decode(errors="replace")):
        assert CANARY not in where

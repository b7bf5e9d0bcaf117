"""A fleet file that breaks while supervising: the last good fleet stays, audited, paged once."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from supervisor.recovery.context import FLEET_DEDUP_KEY, Engine, FleetSource
from tests.recovery.conftest import Rig
from tests.test_secretfile import CANARY, assert_no_leak


def bump_mtime(path: Path, step: int) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + step * 1_000_000_000))


def test_a_broken_reload_keeps_the_last_good_fleet(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.gateway("kitchen")
    path = rig.engine().fleet.path  # writes the fleet file
    fleet_path = Path(path)
    source = FleetSource(fleet_path)
    engine = Engine(source.get, rig.store, rig.identity, pager=rig.pager)
    source.on_broken = engine.fleet_broken
    source.on_repaired = engine.fleet_repaired
    good = source.get()
    token_file = fleet_path.parent / "simulator.token"
    original = token_file.read_bytes()

    with caplog.at_level(logging.ERROR):
        # three broken versions in a row: a stray byte, UTF-16, then /dev/zero
        token_file.write_bytes(CANARY.encode() + b"\xa0")
        bump_mtime(fleet_path, 1)
        for _ in range(3):
            assert source.get() is good
        token_file.write_bytes(CANARY.encode("utf-16"))
        bump_mtime(fleet_path, 2)
        assert source.get() is good
        fleet_path.write_text(fleet_path.read_text().replace("simulator.token", "/dev/zero"))
        assert source.get() is good

    errors = [r.getMessage() for r in caplog.records if "keeping the previous" in r.getMessage()]
    assert len(errors) == 3  # one line per broken version, not per get()
    for text in errors:
        assert_no_leak(text)
    audited = [r for r in rig.store.audit.tail(50) if r.outcome == "fleet_broken"]
    assert len(audited) == 3
    for record in audited:
        assert_no_leak(record.model_dump_json())
    assert rig.pager.triggers == [(FLEET_DEDUP_KEY, "escalated")]  # paged once

    fleet_path.write_text(fleet_path.read_text().replace("/dev/zero", "simulator.token"))
    token_file.write_bytes(original)
    bump_mtime(fleet_path, 5)
    assert source.get() is not good
    assert rig.pager.resolves == [FLEET_DEDUP_KEY]
    for key in rig.store.client.scan_iter(match=rig.store.keys.all_keys()):
        value = rig.store.client.dump(key) or b""
        assert CANARY.encode() not in value

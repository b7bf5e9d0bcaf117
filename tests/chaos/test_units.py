"""Small checks of the pieces the chaos suite added to supervisor/ (no processes, no Redis)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from supervisor.app import split_password
from tests.chaos.proxy import FrameReader, method_of


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", ("redis://127.0.0.1:6379/0", None)),
        ("redis://:p%40ss@h:1/0", ("redis://h:1/0", "p@ss")),
        ("redis://user:pw@h:1/2", ("redis://user@h:1/2", "pw")),
        ("rediss://u@h/0", ("rediss://u@h/0", None)),
        ("redis://:pw@[::1]:6379/0", ("redis://[::1]:6379/0", "pw")),
    ],
)
def test_split_password(url: str, expected: tuple[str, str | None]) -> None:
    assert split_password(url) == expected


def _hit(tmp_path: Path, tag: str) -> int:
    code = f"from supervisor import failpoints; failpoints.hit('after_act', 'reset', {tag!r})"
    env = {
        "SUPERVISOR_FAILPOINT": "after_act:reset",
        "SUPERVISOR_FAILPOINT_ONCE": str(tmp_path / "{tag}"),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run([sys.executable, "-c", code], env=env, timeout=30).returncode


def test_a_tagged_once_failpoint_fires_once_per_tag(tmp_path: Path) -> None:
    assert _hit(tmp_path, "gw/agent:main:a") == -9
    assert _hit(tmp_path, "gw/agent:main:a") == 0  # fired already for this session
    assert _hit(tmp_path, "gw/agent:main:b") == -9  # another session loses its worker too
    assert {p.name for p in tmp_path.iterdir()} == {
        quote("gw/agent:main:a", safe=""),
        quote("gw/agent:main:b", safe=""),
    }


def test_the_proxy_reads_masked_client_frames() -> None:
    reader = FrameReader()
    payload = b'{"type":"req","id":"r1","method":"sessions.reset","params":{}}'
    mask = b"\x01\x02\x03\x04"
    masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    frame = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask + masked
    upgrade = b"GET /gw HTTP/1.1\r\nHost: x\r\n\r\n"
    data = upgrade + frame
    texts = reader.feed(data[:10]) + reader.feed(data[10:40]) + reader.feed(data[40:])
    assert [method_of(t) for t in texts] == ["sessions.reset"]

"""compose.yaml's device identity: one key file every host mounts, not the per-host volume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_every_supervisor_service_presents_the_mounted_shared_key() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    key_file = compose["x-supervisor"]["environment"]["SUPERVISOR_DEVICE_KEY_FILE"]
    (secret,) = compose["x-supervisor"]["secrets"]
    assert key_file == f"/run/secrets/{secret['target']}"
    assert secret["mode"] & 0o077 == 0  # the loader refuses a key others may read
    source = compose["secrets"][secret["source"]]
    assert source["file"] == "./device-ed25519.pem"  # a file copied to each host, not a volume
    state = compose["x-supervisor"]["environment"]["SUPERVISOR_STATE_DIR"]
    assert not key_file.startswith(state)
    for name, service in compose["services"].items():
        if name == "redis":
            continue
        env = service.get("environment") or {}
        assert env.get("SUPERVISOR_DEVICE_KEY_FILE") == key_file, name
        assert service.get("secrets") == [secret], name
    assert "device-ed25519.pem" in (ROOT / ".gitignore").read_text().splitlines()

"""Many hosts, one device: a key file every host mounts (`SUPERVISOR_DEVICE_KEY_FILE`).

Each "host" is a separate `lane-supervisor check` process with its own state dir, against a
simulated 2026.3.24 gateway that does not pair devices by itself (a remote one): approved once
for host A's device, host B is served too only because it presents the same device. Hostile
key files are refused with one line naming the file and the reason, never a byte of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.errors import ConfigError
from supervisor.gateway.identity import identity_for, load_identity_file
from supervisor.settings import Settings
from supervisor.simulator import SimGateway, SimulatorServer
from supervisor.simulator.demo import DEMO_TOKEN, write_fleet

CANARY = "canary-device-key-7f3a19"


def genpkey(path: Path) -> Path:
    """A key as the README says to make one (openssl), mode 0600."""
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    path.chmod(0o600)
    return path


def check(fleet: Path, state: Path, key_file: Path | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    env["SUPERVISOR_STATE_DIR"] = str(state)
    if key_file is not None:
        env["SUPERVISOR_DEVICE_KEY_FILE"] = str(key_file)
    return subprocess.run(
        [sys.executable, "-m", "supervisor", "check", "--fleet", str(fleet), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture
def remote() -> Iterator[tuple[SimulatorServer, SimGateway]]:
    server = SimulatorServer()
    gw = server.add(
        SimGateway("remote", version="2026.3.24", token=DEMO_TOKEN, auto_approve_devices=False)
    )
    gw.add_zombie("agent:dev:zombie")
    with server.running():
        yield server, gw


def _error(proc: subprocess.CompletedProcess[str]) -> str | None:
    doc = json.loads(proc.stdout)
    (gateway,) = doc["gateways"]
    error = gateway["error"]
    assert error is None or isinstance(error, str)
    return error


def test_hosts_sharing_the_key_file_are_one_approved_device(
    remote: tuple[SimulatorServer, SimGateway], tmp_path: Path
) -> None:
    sim, gw = remote
    fleet = write_fleet(sim, tmp_path, stale_after="0s")
    shared = genpkey(tmp_path / "device-ed25519.pem")
    device = load_identity_file(shared).device_id
    # the operator approves the deployment's device once on the gateway host
    sim.call(gw.paired_devices.add, device)
    a = check(fleet, tmp_path / "host-a", shared)
    b = check(fleet, tmp_path / "host-b", shared)
    for proc in (a, b):
        assert proc.returncode == 1, proc.stderr  # the zombie is found: scopes were granted
        assert _error(proc) is None
    hosts = [Settings(state_dir=tmp_path / h, device_key_file=shared) for h in ("h1", "h2")]
    assert {identity_for(s).device_id for s in hosts} == {device}
    # the key is only read: no host made a key of its own in its state dir
    assert not list(tmp_path.glob("host-*/device-ed25519.pem"))


def test_without_the_shared_key_each_host_is_a_new_unpaired_device(
    remote: tuple[SimulatorServer, SimGateway], tmp_path: Path
) -> None:
    """What the shared key prevents: a host with its own state-dir key is not approved."""
    sim, gw = remote
    fleet = write_fleet(sim, tmp_path, stale_after="0s")
    a_state = tmp_path / "host-a"
    approved = identity_for(Settings(state_dir=a_state)).device_id
    sim.call(gw.paired_devices.add, approved)
    assert _error(check(fleet, a_state, None)) is None
    other = identity_for(Settings(state_dir=tmp_path / "host-b")).device_id
    assert other != approved
    error = _error(check(fleet, tmp_path / "host-b", None))
    assert error is not None and "approve this device" in error


def _hostile(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"key-{kind}"
    if kind == "group-readable":
        genpkey(path).chmod(0o640)
    elif kind == "garbage":
        path.write_bytes(b"\xff\xfe" + CANARY.encode() + os.urandom(64) + b"\x00\x80")
        path.chmod(0o600)
    elif kind == "pem-like":
        body = CANARY.encode().hex()
        path.write_text(
            f"-----BEGIN PRIVATE KEY-----\n{CANARY}\n{body}\n-----END PRIVATE KEY-----\n"
        )
        path.chmod(0o600)
    elif kind == "huge":
        path.write_bytes((CANARY + "\n").encode() * 4096)
        path.chmod(0o600)
    elif kind == "rsa":
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:1024",
             "-out", str(path)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        path.chmod(0o600)
    elif kind == "encrypted":
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "ed25519", "-aes-128-cbc", "-pass",
             f"pass:{CANARY}", "-out", str(path)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        path.chmod(0o600)
    elif kind == "symlink-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "symlink-readable":
        target = genpkey(tmp_path / "target.pem")
        target.chmod(0o644)
        path.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "directory":
        path.mkdir(mode=0o700)
    elif kind == "missing":
        pass
    else:
        raise AssertionError(kind)
    return path


HOSTILE = {
    "group-readable": "group or others may read it (mode 640)",
    "garbage": "does not hold a PEM private key",
    "pem-like": "does not hold a PEM private key",
    "huge": "larger than",
    "rsa": "not Ed25519",
    "encrypted": "encrypted",
    "symlink-dev-zero": "not a regular file",
    "symlink-readable": "group or others may read it (mode 644)",
    "fifo": "not a regular file",
    "directory": "not a regular file",
    "missing": "openssl genpkey -algorithm ed25519",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_key_file_is_one_clear_line_without_its_bytes(kind: str, tmp_path: Path) -> None:
    path = _hostile(tmp_path, kind)
    with pytest.raises(ConfigError) as caught:
        load_identity_file(path)
    text = str(caught.value)
    assert HOSTILE[kind] in text and str(path) in text
    assert CANARY not in text and CANARY not in repr(caught.value)
    assert caught.value.__context__ is None or CANARY not in str(caught.value.__context__)


@pytest.mark.parametrize("kind", ["garbage", "symlink-dev-zero", "group-readable"])
def test_the_cli_refuses_a_hostile_key_file_with_exit_64(kind: str, tmp_path: Path) -> None:
    server = SimulatorServer()
    server.add(SimGateway("gw", version="2026.9.6", token=DEMO_TOKEN))
    with server.running():
        fleet = write_fleet(server, tmp_path, stale_after="0s")
        proc = check(fleet, tmp_path / "state", _hostile(tmp_path, kind))
    assert proc.returncode == 64, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and HOSTILE[kind] in lines[0], proc.stderr
    assert CANARY not in proc.stdout + proc.stderr

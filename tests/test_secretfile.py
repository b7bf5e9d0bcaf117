"""Hostile secret files: refused with a reason, never a byte of the content, never a hang."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from supervisor.errors import ConfigError, FleetFileError
from supervisor.fleet import load_fleet
from supervisor.secretfile import MAX_SECRET_BYTES, SecretFileError, read_secret_file

CANARY = "CANARYsecret7f3a"
#: the canary as it would leak: plain, as bytes in a repr, or UTF-16's NUL-interleaved form
LEAK_FORMS = (CANARY, repr(CANARY.encode()), "C\\x00A\\x00N", "CANARY")


def assert_no_leak(text: str) -> None:
    for form in LEAK_FORMS:
        assert form not in text, f"secret leaked as {form!r}: {text!r}"


def hostile_files(tmp_path: Path) -> dict[str, Path]:
    """Every hostile kind of secret file the fleet must refuse, by name."""
    files: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        path = tmp_path / name
        path.write_bytes(data)
        path.chmod(0o600)
        files[name] = path

    write("non_utf8", CANARY.encode() + b"\xa0")
    write("utf16_bom", CANARY.encode("utf-16"))
    write("utf16_nobom", CANARY.encode("utf-16-le"))
    write("huge", CANARY.encode() * (MAX_SECRET_BYTES // len(CANARY) + 10))
    write("control", CANARY.encode() + b"\x1b[2J")
    write("empty", b" \n\t\n")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    files["fifo"] = fifo
    (tmp_path / "dir").mkdir()
    files["directory"] = tmp_path / "dir"
    files["dev_zero"] = Path("/dev/zero")
    link = tmp_path / "link_to_dev_zero"
    link.symlink_to("/dev/zero")
    files["symlink_to_device"] = link
    files["missing"] = tmp_path / "nothing-here"
    return files


def test_a_good_file_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"\xef\xbb\xbf  " + CANARY.encode() + b"\n\n")
    path.chmod(0o600)
    assert read_secret_file(path) == CANARY


def test_a_symlink_to_a_regular_file_is_followed(tmp_path: Path) -> None:
    # Kubernetes mounts secrets as symlinks into ..data/: they must keep working
    (tmp_path / "..data").mkdir()
    target = tmp_path / "..data" / "token"
    target.write_text(CANARY)
    target.chmod(0o600)
    (tmp_path / "token").symlink_to("..data/token")
    assert read_secret_file(tmp_path / "token") == CANARY


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("non_utf8", "not valid UTF-8 (at byte offset 16)"),
        ("utf16_bom", "UTF-16"),
        ("utf16_nobom", "NUL bytes"),
        ("huge", f"larger than {MAX_SECRET_BYTES} bytes"),
        ("control", "control character"),
        ("empty", "is empty"),
        ("fifo", "is a FIFO"),
        ("directory", "is a directory"),
        ("dev_zero", "is a device"),
        ("symlink_to_device", "is a device"),
        ("missing", "No such file"),
    ],
)
def test_hostile_files_are_refused_without_content(tmp_path: Path, kind: str, words: str) -> None:
    path = hostile_files(tmp_path)[kind]
    done = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            read_secret_file(path)
        except BaseException as exc:  # the test inspects whatever comes out
            errors.append(exc)
        done.set()

    # a FIFO without a writer blocks a plain open() forever: bound the wait, never hang CI
    threading.Thread(target=read, daemon=True).start()
    assert done.wait(5), f"reading {kind} did not return"
    (exc,) = errors
    assert isinstance(exc, SecretFileError)
    assert words in str(exc)
    for shown in (str(exc), repr(exc), repr(exc.__context__), repr(exc.__cause__)):
        assert_no_leak(shown)


def test_group_readable_files_warn_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "token"
    path.write_text(CANARY)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="supervisor.secretfile"):
        for _ in range(3):
            read_secret_file(path)
    warnings = [r for r in caplog.records if "readable by group or others" in r.getMessage()]
    assert len(warnings) == 1
    assert "644" in warnings[0].getMessage()
    caplog.clear()
    private = tmp_path / "private"
    private.write_text(CANARY)
    private.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="supervisor.secretfile"):
        read_secret_file(private)
    assert not caplog.records


FLEET = """
[[gateways]]
name = "kitchen"
url = "ws://127.0.0.1:18789"
token_file = "{token}"
"""

PAGING = """
[[gateways]]
name = "kitchen"
url = "ws://127.0.0.1:18789"
token_env = "T"

[paging.providers.pd]
type = "pagerduty"
routing_key_file = "{token}"

[paging.default_route]
providers = ["pd"]
"""


@pytest.mark.parametrize("template", [FLEET, PAGING], ids=["token_file", "routing_key_file"])
def test_fleet_errors_name_the_field_not_the_secret(tmp_path: Path, template: str) -> None:
    for kind, path in hostile_files(tmp_path).items():
        fleet = tmp_path / f"fleet-{kind}.toml"
        fleet.write_text(template.format(token=path))
        with pytest.raises(FleetFileError) as info:
            load_fleet(fleet, {"T": "x"})
        assert "_file" in str(info.value.field), kind
        assert_no_leak(str(info.value))
        assert "\n" not in str(info.value)


def test_a_hostile_fleet_file_itself_is_a_fleet_error(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_bytes(b"# \xff\xfe" + CANARY.encode() + b"\xa0\n")
    with pytest.raises(FleetFileError, match="not valid UTF-8"):
        load_fleet(tmp_path / "bad.toml")
    with pytest.raises(FleetFileError, match="is a device"):
        load_fleet("/dev/zero")


def test_an_unforeseen_loading_error_is_still_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import supervisor.fleet as fleet_module

    def explode(*_args: object, **_kwargs: object) -> None:
        raise UnicodeDecodeError("utf-8", CANARY.encode(), 0, 1, "boom")

    monkeypatch.setattr(fleet_module, "parse_fleet", explode)
    (tmp_path / "f.toml").write_text("")
    with pytest.raises(ConfigError) as info:
        load_fleet(tmp_path / "f.toml")
    assert "UnicodeDecodeError" in str(info.value)
    assert_no_leak(str(info.value))
    assert info.value.__context__ is None


@pytest.mark.parametrize("kind", ["non_utf8", "utf16_bom", "huge", "fifo", "dev_zero"])
def test_cli_exits_64_with_one_line(tmp_path: Path, kind: str) -> None:
    path = hostile_files(tmp_path)[kind]
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(FLEET.format(token=path))
    proc = subprocess.run(
        [sys.executable, "-m", "supervisor", "fleet", "validate", str(fleet)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 64, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert_no_leak(proc.stdout + proc.stderr)

"""The README's generated configuration reference is current, and every command has --help."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from supervisor import reference
from supervisor.cli import app as cli
from supervisor.core.policy import Policy
from supervisor.settings import Settings


def test_readme_reference_is_up_to_date() -> None:
    current = reference.README.read_text()
    assert reference.render(current) == current, "run: python -m supervisor.reference --write"


def test_every_setting_and_policy_key_is_documented_with_a_description() -> None:
    text = reference.README.read_text()
    for name, field in Settings.model_fields.items():
        assert f"`SUPERVISOR_{name.upper()}`" in text
        assert field.description, name
    for name, field in Policy.model_fields.items():
        assert f"| `{name}` |" in text
        assert field.description, name


COMMANDS = sorted(typer.main.get_command(cli).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "supervisor", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout

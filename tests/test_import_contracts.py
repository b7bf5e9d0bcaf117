"""The import-linter contracts in pyproject.toml cover every module of the package.

`lint-imports` (run by tests/test_static.py) checks the contracts; this checks that they name
every top-level module, so a new one cannot slip past the layers or the Celery rule unplaced.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "supervisor"
#: heartbeat hooks Celery's worker signals: Celery wiring, like the other three
CELERY_MODULES = {
    "supervisor.app",
    "supervisor.tasks",
    "supervisor.schedule",
    "supervisor.heartbeat",
}


def top_level_modules() -> set[str]:
    names = {f"supervisor.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    names |= {f"supervisor.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    return names


def contract(name_start: str) -> dict[str, Any]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (found,) = [c for c in contracts["contracts"] if c["name"].startswith(name_start)]
    return dict(found)


def test_every_subdirectory_with_modules_is_a_package() -> None:
    # a directory without __init__.py is invisible to import-linter (and to setuptools' find)
    for directory in (p for p in PACKAGE.iterdir() if p.is_dir() and any(p.glob("*.py"))):
        assert (directory / "__init__.py").is_file(), directory


def test_every_module_has_exactly_one_layer() -> None:
    layers = [{name.strip() for name in layer.split("|")} for layer in contract("Layers")["layers"]]
    placed = [name for layer in layers for name in layer]
    assert sorted(placed) == sorted(set(placed)), "a module is in two layers"
    assert set(placed) == top_level_modules()


@pytest.mark.parametrize(
    ("name", "exempt"),
    [
        ("Celery is imported by", CELERY_MODULES),
        ("The decision core imports nothing", {"supervisor.core"}),
    ],
)
def test_forbidden_contracts_name_every_other_module(name: str, exempt: set[str]) -> None:
    found = contract(name)
    named = set(found["source_modules"] if exempt == CELERY_MODULES else found["forbidden_modules"])
    assert named == top_level_modules() - exempt

"""The locks (./dev lock) are what ./dev, CI and the Dockerfile install, and setup is quiet."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.deploy.conftest import REPO

RUNTIME = REPO / "requirements.lock"
TEST = REPO / "requirements-test.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(lock: Path) -> dict[str, str]:
    out = {}
    for line in lock.read_text().splitlines():
        m = PIN.match(line)
        if m:
            out[canonicalize_name(m.group(1))] = m.group(2)
    return out


def entries(lock: Path) -> list[str]:
    """One requirement per entry, its continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", lock.read_text())
    return [line for line in text.splitlines() if PIN.match(line)]


def project() -> dict[str, object]:
    doc: dict[str, object] = tomllib.loads((REPO / "pyproject.toml").read_text())
    return doc


def test_every_entry_is_pinned_and_hashed() -> None:
    for lock in (RUNTIME, TEST):
        found = entries(lock)
        assert len(found) > 30, lock.name
        for entry in found:
            assert "--hash=sha256:" in entry, f"{lock.name}: {entry[:60]}"
        assert "--find-links" not in lock.read_text()  # nothing of this machine's pip config
        assert "--index-url" not in lock.read_text()


def test_the_test_lock_holds_the_runtime_lock_at_the_same_versions() -> None:
    runtime, test = pins(RUNTIME), pins(TEST)
    differ = {n: (v, test.get(n)) for n, v in runtime.items() if test.get(n) != v}
    assert differ == {}


def test_every_declared_dependency_is_locked_within_its_range() -> None:
    doc = project()
    proj = doc["project"]
    assert isinstance(proj, dict)
    build = doc["build-system"]
    assert isinstance(build, dict)
    runtime, test = pins(RUNTIME), pins(TEST)
    for lock, reqs in (
        (runtime, proj["dependencies"] + build["requires"]),
        (test, proj["dependencies"] + proj["optional-dependencies"]["test"] + build["requires"]),
    ):
        for text in reqs:
            req = Requirement(text)
            name = canonicalize_name(req.name)
            assert name in lock, f"{req.name} is not locked"
            assert SpecifierSet(str(req.specifier)).contains(lock[name]), (text, lock[name])


def test_this_virtualenv_was_installed_from_the_test_lock() -> None:
    wrong = {}
    for name, version in pins(TEST).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # a marker excluded it here
        if installed != version:
            wrong[name] = (version, installed)
    assert wrong == {}, "./dev test resolves afresh? locked vs installed: " + repr(wrong)


def test_dev_ci_and_dockerfile_install_from_the_locks() -> None:
    dev = (REPO / "dev").read_text()
    assert "LOCK=requirements-test.lock" in dev
    assert '--require-hashes --no-deps -r "$LOCK"' in dev
    assert "--no-deps --no-build-isolation -e ." in dev
    assert 'cat pyproject.toml "$LOCK" | sha256sum' in dev  # the venv stamp keys on the lock
    assert "exec ./dev test" in (REPO / ".ci" / "run").read_text()
    docker = (REPO / "Dockerfile").read_text()
    assert "--require-hashes --no-deps" in docker and "-r requirements.lock" in docker
    assert "--no-deps --no-build-isolation ." in docker
    assert "FROM python:3.11-slim" in docker
    assert "Python 3.11" in RUNTIME.read_text()  # the lock's interpreter, as the image's


def test_building_the_project_prints_no_warning(tmp_path: Path) -> None:
    # the setuptools of the lock, every warning an error (a `license = { text = ... }` table
    # makes setuptools >= 77 warn, three times during `pip install -e .`)
    done = subprocess.run(
        [
            sys.executable, "-W", "error", "-c",
            "import sys; from setuptools import build_meta as b; "
            "b.prepare_metadata_for_build_wheel(sys.argv[1])",
            str(tmp_path),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warning" not in (done.stdout + done.stderr).lower()
    meta = next(tmp_path.glob("*.dist-info")) / "METADATA"
    assert "License-Expression: MIT" in meta.read_text()

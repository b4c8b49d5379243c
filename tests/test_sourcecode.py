"""The source tree stays typed and linted (as asyncpg's test__sourcecode does),
and the compiled core is what runs unless the pure build was asked for."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(exe).exists():
        pytest.fail(f"{name} is not installed: install the test extras (pip install '.[test]')")
    return exe


def test_compiled_core_loaded() -> None:
    import dna._core as core

    if os.environ.get("DNA_NO_EXTENSIONS"):
        assert not core.COMPILED
    else:
        assert core.COMPILED, "the Cython core did not load: the install is broken or slow"
        assert core.Mailbox.__module__ == "dna._core.mailbox"


def test_mypy_strict() -> None:
    r = subprocess.run(
        [_tool("mypy"), "--strict", "--config-file", str(ROOT / "pyproject.toml"),
         str(ROOT / "src" / "dna")],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff() -> None:
    r = subprocess.run(
        [_tool("ruff"), "check", "src", "tests", "benchmarks", "bench", "examples"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_import_layers() -> None:
    """DESIGN.md's layering, as import-linter contracts in pyproject.toml: no import
    cycle (TYPE_CHECKING imports included), _core knows no runtime, only store/
    imports a driver, storage modules never import the node."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run(
        [_tool("lint-imports"), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=ROOT / "src", capture_output=True, text=True, env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "BROKEN" not in r.stdout and r.stdout.count("KEPT") >= 6, r.stdout


def test_the_store_contract_is_never_probed() -> None:
    """Everything a store provides is declared on ``Store``: nothing asks with getattr."""
    offenders = []
    for path in (ROOT / "src" / "dna").rglob("*.py"):
        text = path.read_text()
        if "getattr(self.store" in text or "getattr(store" in text:
            offenders.append(str(path))
    assert not offenders


def test_no_pickle_in_the_package() -> None:
    offenders = []
    for path in (ROOT / "src" / "dna").rglob("*.py*"):
        text = path.read_text(errors="replace")
        if "import pickle" in text or "from pickle" in text or "cloudpickle" in text:
            offenders.append(str(path))
    assert not offenders

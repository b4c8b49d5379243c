"""The ``dna`` command as a user meets it: real ``python -m dna`` processes, every
expected failure one line on stderr with its documented exit code, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.conftest import CQL_HOSTS, CQL_KEYSPACE, NO_CQL_REASON

import dna
import dna.storage
from dna.cli import (
    EXIT_ADDRESS,
    EXIT_CONFIG,
    EXIT_NOT_FOUND,
    EXIT_STORE,
    EXIT_USAGE,
    build_parser,
)

SRC = str(Path(dna.__file__).resolve().parent.parent)
SECRET = b"a test secret of more than sixteen bytes"


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in [SRC, e.get("PYTHONPATH", "")] if p)
    return e


def dna_cli(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dna", *args], capture_output=True, text=True, env=env(),
        cwd=cwd, timeout=timeout,
    )


def one_line_error(r: subprocess.CompletedProcess[str], code: int, *says: str) -> str:
    """The process failed with ``code`` and wrote one line to stderr, containing ``says``."""
    err = r.stderr.strip()
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in err and err.count("\n") == 0, err
    for s in says:
        assert s in err, (s, err)
    return err


def secret_file(tmp_path: Path, content: bytes = SECRET, mode: int = 0o600) -> str:
    path = tmp_path / "secret"
    path.write_bytes(content)
    path.chmod(mode)
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def node_process(
    *args: str, cwd: Path | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A running ``dna node``; yields the process and its first stdout line."""
    p = subprocess.Popen(
        [sys.executable, "-m", "dna", "node", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env(), cwd=cwd,
    )
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        if not line:
            raise AssertionError(f"node did not start: {p.communicate(timeout=10)}")
        yield p, line
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()


# ---------------------------------------------------------------- help and version


def test_version() -> None:
    r = dna_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"dna {dna.__version__}", r


def test_help_documents_exit_codes_and_every_option_has_help() -> None:
    r = dna_cli("--help")
    assert r.returncode == 0
    for code in (EXIT_STORE, EXIT_USAGE, EXIT_CONFIG, EXIT_ADDRESS, EXIT_NOT_FOUND):
        assert re.search(rf"^\s+{code}\s", r.stdout, re.M), r.stdout
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (name, action.option_strings)
            if action.default not in (None, False):  # the default is said
                assert "default" in action.help, (name, action.option_strings)
    node_help = " ".join(dna_cli("node", "--help").stdout.split())
    assert "default: 127.0.0.1:7101" in node_help and "default: 300" in node_help


# ---------------------------------------------------------------- dna node


def test_bad_listen_string(tmp_path: Path) -> None:
    for listen in ("nope", "host:99999", ":"):
        r = dna_cli("node", "--store", "memory://", "--listen", listen, cwd=tmp_path)
        one_line_error(r, EXIT_USAGE, "--listen", repr(listen))


def test_a_negative_gc_threshold_is_a_usage_error(tmp_path: Path) -> None:
    r = dna_cli("node", "--store", "memory://", "--gc-threshold", "-5", cwd=tmp_path)
    one_line_error(r, EXIT_USAGE, "--gc-threshold", "-5")


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = dna_cli("node", "--store", "memory://", "--listen", f"127.0.0.1:{port}",
                    cwd=tmp_path)
    one_line_error(r, EXIT_ADDRESS, f"127.0.0.1:{port}", "in use")


def test_listening_off_loopback_without_a_secret(tmp_path: Path) -> None:
    r = dna_cli("node", "--store", "memory://", "--listen", "0.0.0.0:0", cwd=tmp_path)
    one_line_error(r, EXIT_USAGE, "secret")


def test_missing_app_module(tmp_path: Path) -> None:
    r = dna_cli("node", "--store", "memory://", "--listen", "127.0.0.1:0", "--app",
                "no_such_app_module", cwd=tmp_path)
    one_line_error(r, EXIT_CONFIG, "no_such_app_module")


def test_app_module_that_fails_names_the_cause(tmp_path: Path) -> None:
    (tmp_path / "broken_app.py").write_text("x = 1\nraise RuntimeError('boom in app')\n")
    r = dna_cli("node", "--store", "memory://", "--listen", "127.0.0.1:0", "--app",
                "broken_app", cwd=tmp_path)
    one_line_error(r, EXIT_CONFIG, "broken_app", "RuntimeError: boom in app", "broken_app.py:2")


def test_app_imports_from_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "chat_app.py").write_text(
        "import dna\nclass Room(dna.Actor):\n    @dna.call\n    def hi(self):\n"
        "        return 'hi'\nprint('chat_app imported', flush=True)\n"
    )
    with node_process("--store", "memory://", "--listen", "127.0.0.1:0", "--app", "chat_app",
                      cwd=tmp_path) as (_p, line):
        assert "chat_app imported" in line


@pytest.mark.parametrize(
    ("content", "mode", "says"),
    [
        (SECRET, 0o644, "readable by other users"),
        (SECRET, 0o640, "readable by other users"),
        (b"short", 0o600, "at least 16"),
        (b"\n", 0o600, "at least 16"),
    ],
)
def test_bad_secret_file_is_refused(tmp_path: Path, content: bytes, mode: int, says: str) -> None:
    path = secret_file(tmp_path, content, mode)
    r = dna_cli("node", "--store", "memory://", "--listen", "127.0.0.1:0",
                "--secret-file", path, cwd=tmp_path)
    one_line_error(r, EXIT_CONFIG, path, says)


def test_missing_secret_file(tmp_path: Path) -> None:
    r = dna_cli("node", "--store", "memory://", "--listen", "127.0.0.1:0",
                "--secret-file", str(tmp_path / "nope"), cwd=tmp_path)
    one_line_error(r, EXIT_CONFIG, "nope", "No such file")


def test_foreign_database(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as c:
        c.execute("create table t (x)")
    for cmd in ("node", "status"):
        extra = ["--listen", "127.0.0.1:0"] if cmd == "node" else []
        r = dna_cli(cmd, "--store", f"sqlite://{db}", *extra, cwd=tmp_path)
        one_line_error(r, EXIT_STORE, "other.db")


def test_store_unreachable(tmp_path: Path) -> None:
    port = free_port()
    for cmd in ("node", "status"):
        extra = ["--listen", "127.0.0.1:0", "--log-level", "warning"] if cmd == "node" else []
        r = dna_cli(cmd, "--store", f"cql://127.0.0.1:{port}/ks?connect_timeout=2", *extra,
                    cwd=tmp_path)
        if "scylla-driver" in r.stderr or "cql extra" in r.stderr:
            pytest.fail("the CQL driver is not installed: pip install '.[test]'")
        one_line_error(r, EXIT_STORE, f"127.0.0.1:{port}")


def test_bad_store_url_is_a_usage_error(tmp_path: Path) -> None:
    r = dna_cli("node", "--store", "bogus://x", cwd=tmp_path)
    one_line_error(r, EXIT_USAGE, "unknown scheme 'bogus'")
    assert os.listdir(tmp_path) == []


def test_status_of_a_missing_sqlite_file(tmp_path: Path) -> None:
    r = dna_cli("status", "--store", f"sqlite://{tmp_path}/nope.db")
    one_line_error(r, EXIT_STORE, "nope.db", "does not exist")
    assert os.listdir(tmp_path) == []


def test_node_runs_and_drains_on_sigterm(tmp_path: Path) -> None:
    path = secret_file(tmp_path)
    with node_process("--store", f"sqlite://{tmp_path}/a.db", "--listen", "127.0.0.1:0",
                      "--secret-file", path, cwd=tmp_path) as (p, line):
        assert "listening on 127.0.0.1:" in line
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


def test_advertise_is_what_peers_see(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with node_process("--store", f"sqlite://{db}", "--listen", "127.0.0.1:0",
                      "--advertise", "10.9.8.7:7101", cwd=tmp_path) as (_p, line):
        assert "listening on 10.9.8.7:7101" in line
        r = dna_cli("status", "--store", f"sqlite://{db}", "--json")
        assert r.returncode == 0, r.stderr
        assert [row["address"] for row in json.loads(r.stdout)] == ["10.9.8.7:7101"]
    r = dna_cli("node", "--store", "memory://", "--listen", "127.0.0.1:0", "--advertise", "x")
    one_line_error(r, EXIT_USAGE, "--advertise")


# ---------------------------------------------------------------- logging


def test_the_library_only_names_its_loggers() -> None:
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("dna").handlers)


def test_log_records_are_one_line_with_controls_escaped() -> None:
    from dna._log import EscapeControl, JSONFormatter

    try:
        raise ValueError("bad\x1b[2J\nFORGED line")
    except ValueError:
        exc_info = sys.exc_info()
    rec = logging.LogRecord("dna.node", logging.WARNING, __file__, 1, "peer %s said %r",
                            ("evil\nid\x1b[31m", "x"), exc_info)
    assert EscapeControl().filter(rec)
    assert rec.getMessage() == "peer evil\\nid\\x1b[31m said 'x'"
    assert "\x1b" not in (rec.exc_text or "") and "bad\\x1b[2J\\nFORGED" in (rec.exc_text or "")
    out = json.loads(JSONFormatter().format(rec))
    assert set(out) == {"time", "level", "logger", "message", "exc"}
    assert out["level"] == "WARNING" and out["logger"] == "dna.node"
    assert out["exc"].startswith("Traceback") and out["time"].endswith("Z")


TESTS = Path(__file__).resolve().parent


async def _fail_one_call(tmp_path: Path, *log_args: str) -> tuple[str, str]:
    """Run a node with ``log_args``; a peer's call to a handler that raises, under an actor
    key holding a newline and a terminal escape. Returns the node's stdout and stderr."""
    from dna.store.sqlite import SQLiteStore
    from ops_app import OpsProbe

    db = tmp_path / "app.db"
    with node_process("--store", f"sqlite://{db}", "--listen", "127.0.0.1:0", "--app",
                      "ops_app", "--secret-file", secret_file(tmp_path), *log_args,
                      cwd=TESTS) as (p, _line):
        client = dna.Node(store=SQLiteStore(db), listen="127.0.0.1:0", secret=SECRET,
                          host_actors=False)
        async with client:
            with pytest.raises(dna.ActorError, match="ValueError: handler text"):
                await client.ref(OpsProbe, "k\nFORGED\x1b[2J").boom("handler text")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return out, err


async def test_failed_calls_are_logged_as_json_with_their_traceback(tmp_path: Path) -> None:
    _, err = await _fail_one_call(tmp_path, "--log-format", "json",
                                  "--failed-call-log-level", "warning")
    records = [json.loads(line) for line in err.splitlines()]  # every line is one object
    failed = [r for r in records if "failed" in r["message"] and r["logger"] == "dna.node"]
    assert len(failed) == 1, records
    (rec,) = failed
    assert rec["level"] == "WARNING"
    assert "k\\nFORGED\\x1b[2J" in rec["message"]
    assert "Traceback" in rec["exc"] and "ValueError: handler text" in rec["exc"]
    assert "ops_app.py" in rec["exc"]  # the handler's own frame
    assert any(r["message"].startswith("node ") and "listening" in r["message"]
               for r in records)


async def test_text_log_level_filters_and_no_line_is_forged(tmp_path: Path) -> None:
    _, err = await _fail_one_call(tmp_path, "--failed-call-log-level", "warning")
    assert "\x1b" not in err
    assert not any(line.startswith("FORGED") for line in err.splitlines()), err
    assert "WARNING dna.node: call handler of default/ops_app.OpsProbe/k\\nFORGED" in err
    _, err = await _fail_one_call(tmp_path, "--log-level", "error",
                                  "--failed-call-log-level", "warning")
    assert err == "", err


# ---------------------------------------------------------------- TLS


async def test_nodes_talk_over_mutual_tls_and_a_peer_without_a_certificate_cannot(
    tmp_path: Path,
) -> None:
    import trustme

    import dna
    from dna.examples import KVActor
    from dna.transport import tls_contexts

    ca = trustme.CA()
    files = {}
    for name in ("proc", "here"):
        cert = ca.issue_cert("127.0.0.1", "localhost")
        files[name] = (tmp_path / f"{name}.crt", tmp_path / f"{name}.key")
        cert.cert_chain_pems[0].write_to_path(str(files[name][0]))
        cert.private_key_pem.write_to_path(str(files[name][1]))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    db = tmp_path / "tls.db"
    secret = secret_file(tmp_path)
    with node_process("--store", f"sqlite://{db}", "--listen", "127.0.0.1:0",
                      "--secret-file", secret, "--tls-cert", str(files["proc"][0]),
                      "--tls-key", str(files["proc"][1]), "--tls-ca", str(tmp_path / "ca.crt"),
                      cwd=tmp_path) as (_p, line):
        assert "listening on" in line
        server, client = tls_contexts(*files["here"], tmp_path / "ca.crt")
        node = dna.Node(store=dna.SQLiteStore(str(db)), listen="127.0.0.1:0", secret=SECRET,
                        ssl=server, client_ssl=client, host_actors=False)
        async with node:
            ref = node.ref(KVActor, "over-tls")
            assert await ref.put("k", 1) == "ok"
            assert await ref.get("k") == 1
        plain = dna.Node(store=dna.SQLiteStore(str(db)), listen="127.0.0.1:0", secret=SECRET,
                         host_actors=False, call_timeout=5.0)
        async with plain:
            with pytest.raises(dna.errors.PeerUnavailable):
                await plain.ref(KVActor, "over-tls").get("k")


def test_tls_options_go_together(tmp_path: Path) -> None:
    r = dna_cli("node", "--store", "memory://", "--listen", "127.0.0.1:0",
                "--tls-cert", str(tmp_path / "x.crt"))
    one_line_error(r, EXIT_USAGE, "--tls-ca")
    (tmp_path / "x.crt").write_text("not a certificate")
    r = dna_cli("node", "--store", "memory://", "--listen", "127.0.0.1:0",
                "--tls-cert", str(tmp_path / "x.crt"), "--tls-key", str(tmp_path / "x.crt"),
                "--tls-ca", str(tmp_path / "x.crt"))
    one_line_error(r, EXIT_CONFIG, "TLS")


# ---------------------------------------------------------------- dna actors / dna inspect


class CliRoom(dna.Actor):
    kv = dna.storage.KV()

    @dna.call
    def put(self, key: str, value: object) -> str:
        self.kv.write(key, value)
        return "ok"


async def _populate(url: str, ns: str, n: int) -> None:
    """``n`` CliRoom actors in ``ns``; lobby holds a few values; all passivated but one."""
    from dna.store import open_store

    async with dna.Node(store=open_store(url)) as node:
        for i in range(n):
            await node.ref(CliRoom, f"r{i:02d}", ns).put("n", i)
        lobby = node.ref(CliRoom, "lobby", ns)
        await lobby.put("greeting", "hi\x1b[2J")  # a control sequence must not reach the tty
        await lobby.put("blob", b"\x00\x01")
        await node.destroy(node.ref(CliRoom, "gone", ns))  # created by the destroy, then gone


def _catalog_cli_checks(url: str, ns: str, cwd: Path) -> None:
    base = ("--store", url, "--namespace", ns)
    r = dna_cli("actors", *base, "--type", "CliRoom", "--json", cwd=cwd)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert sorted(a["key"] for a in got["actors"]) == ["lobby"] + [f"r{i:02d}" for i in range(12)]
    assert all(a["epoch"] == 1 and a["owner"] is None and not a["active"] for a in got["actors"])
    # page by page with the printed cursor: each actor once
    keys: list[str] = []
    after: list[str] = []
    while True:
        r = dna_cli("actors", *base, "--limit", "5", *after, cwd=cwd)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].split()[:3] == ["type", "namespace", "key"]
        rows = [ln for ln in lines[1:] if not ln.startswith("next: ")]
        keys += [ln.split()[2] for ln in rows]
        nxt = [ln.split()[1] for ln in lines if ln.startswith("next: ")]
        if not nxt:
            break
        after = ["--after", nxt[0]]
    assert sorted(keys) == sorted(a["key"] for a in got["actors"])
    r = dna_cli("inspect", "--store", url, "--namespace", ns, "CliRoom", "lobby", cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert "[kv]" in r.stdout and "blob = b'\\x00\\x01'" in r.stdout, r.stdout
    assert "\x1b" not in r.stdout and "greeting = 'hi\\x1b[2J'" in r.stdout, r.stdout
    r = dna_cli("inspect", "--store", url, "--namespace", ns, "CliRoom", "r03", "--json", cwd=cwd)
    assert json.loads(r.stdout)["modules"] == {"kv": [["n", 3]]}
    r = dna_cli("actors", *base, "--type", "NoSuchRoom", cwd=cwd)
    one_line_error(r, EXIT_NOT_FOUND, "no actor of type 'NoSuchRoom'")
    r = dna_cli("inspect", "--store", url, "--namespace", ns, "CliRoom", "nobody", cwd=cwd)
    one_line_error(r, EXIT_NOT_FOUND, "no actor", "nobody")
    r = dna_cli("inspect", "--store", url, "--namespace", ns, "CliRoom", "gone", cwd=cwd)
    one_line_error(r, EXIT_NOT_FOUND, "no actor", "gone", "destroyed")
    r = dna_cli("actors", *base, "--after", "not-a-cursor", cwd=cwd)
    one_line_error(r, EXIT_USAGE, "not a catalog cursor")
    r = dna_cli("actors", *base, "--limit", "0", cwd=cwd)
    one_line_error(r, EXIT_USAGE, "--limit")


async def test_actors_and_inspect_on_a_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/app.db"
    await _populate(url, "cli", 12)
    await asyncio.to_thread(_catalog_cli_checks, url, "cli", tmp_path)


@pytest.mark.cql
async def test_actors_and_inspect_on_cassandra(tmp_path: Path, unique: str) -> None:
    if not CQL_HOSTS:
        pytest.skip(NO_CQL_REASON)
    url = f"cql://{CQL_HOSTS}/{CQL_KEYSPACE}"
    await _populate(url, f"cli-{unique}", 12)
    await asyncio.to_thread(_catalog_cli_checks, url, f"cli-{unique}", tmp_path)


def test_actors_and_inspect_never_create_a_store(tmp_path: Path) -> None:
    for args in (["actors"], ["inspect", "Room", "lobby"]):
        r = dna_cli(*args, "--store", f"sqlite://{tmp_path}/nope.db")
        one_line_error(r, EXIT_STORE, "nope.db", "does not exist")
    r = dna_cli("actors", "--type", "", "--store", f"sqlite://{tmp_path}/nope.db")
    one_line_error(r, EXIT_USAGE, "must not be empty")
    assert os.listdir(tmp_path) == []

"""``dna.store.open_store``: one store from a URL, and the command line that uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import CQL_HOSTS, NO_CQL_REASON, opened

import dna
from dna.store import open_store
from dna.store.memory import MemoryStore
from dna.store.sqlite import SQLiteStore

SRC = str(Path(dna.__file__).resolve().parent.parent)


def dna_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "dna", *args], capture_output=True, text=True, env=env,
        cwd=cwd, timeout=120,
    )


def test_sqlite_urls_absolute_and_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = open_store(f"sqlite://{tmp_path}/app.db")  # sqlite:///abs/...: absolute
    assert isinstance(s, SQLiteStore) and s.path == f"{tmp_path}/app.db"
    monkeypatch.chdir(tmp_path)
    rel = open_store("sqlite://data/app.db?synchronous=normal&busy_timeout_ms=250")
    assert isinstance(rel, SQLiteStore)
    assert (rel.path, rel.synchronous, rel.busy_timeout_ms) == ("data/app.db", "NORMAL", 250)
    assert open_store("sqlite://a%3Fb.db").path == "a?b.db"  # type: ignore[attr-defined]
    # keyword options win over the URL's
    assert open_store("sqlite://x.db?busy_timeout_ms=1", busy_timeout_ms=7).busy_timeout_ms == 7  # type: ignore[attr-defined]


def test_cql_urls() -> None:
    pytest.importorskip("cassandra")
    from dna.store.cql import ScyllaStore

    s = open_store("cql://h1:9043,h2,[::1]:9044/My_Ks?lease=4&heartbeat_interval=0.5")
    assert isinstance(s, ScyllaStore)
    assert s.hosts == ["h1:9043", "h2", "[::1]:9044"] and s.keyspace == "my_ks"
    assert (s.lease, s.heartbeat_interval) == (4.0, 0.5)
    d = open_store("cql://h1?heartbeat_interval=none&dead_node_grace=5")
    assert d.keyspace == "dna" and d.heartbeat_interval is None  # type: ignore[attr-defined]
    assert d.dead_node_grace == 5.0  # type: ignore[attr-defined]


def test_memory_urls_share_by_name() -> None:
    a, b, c = open_store("memory://shared"), open_store("memory://shared"), open_store("memory://")
    assert isinstance(a, MemoryStore)
    assert a._db is b._db and c._db is not a._db  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("app.db", "no scheme"),
        ("postgres://h/db", "unknown scheme 'postgres'"),
        ("sqlite://", "no SQLite file named"),
        ("sqlite:///tmp/dir/", "no SQLite file named"),
        ("sqlite://a.db?journal=wal", "unknown option 'journal' for sqlite"),
        ("sqlite://a.db?busy_timeout_ms=soon", "busy_timeout_ms='soon' is not a valid value"),
        ("sqlite://a.db?busy_timeout_ms", "cannot read options"),
        ("cql:///ks", "name CQL hosts"),
        ("cql://h1,,h2/ks", "name CQL hosts"),
        ("cql://h1/ks/extra", "a keyspace has no '/'"),
        ("cql://h1/ks?lease=long", "lease='long' is not a valid value"),
        ("memory://a/b", "a memory store name has no '/'"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError, match="bad store URL") as info:
        open_store(url)
    assert says in str(info.value) and repr(url) in str(info.value)


def test_a_url_must_be_a_string() -> None:
    with pytest.raises(TypeError):
        open_store(Path("x.db"))  # type: ignore[arg-type]


# ---------------------------------------------------------------- the command line


def test_status_of_a_missing_sqlite_file_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    r = dna_cli("status", "--store", f"sqlite://{tmp_path}/nope.db")
    assert r.returncode == 1, r
    assert r.stderr.strip().count("\n") == 0, r.stderr  # one line, no traceback
    assert "does not exist" in r.stderr and "nope.db" in r.stderr
    assert os.listdir(tmp_path) == []


def test_status_with_the_default_store_creates_nothing(tmp_path: Path) -> None:
    r = dna_cli("status", cwd=tmp_path)
    assert r.returncode == 1 and "dna.db does not exist" in r.stderr, r
    assert os.listdir(tmp_path) == []


async def test_status_lists_a_live_node_by_url_and_by_the_older_form(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    async with opened(SQLiteStore(db), "n1"):
        for args in (["--store", f"sqlite://{db}"], ["--store", "sqlite", "--path", str(db)]):
            r = dna_cli("status", *args, "--json")
            assert r.returncode == 0, r
            rows = json.loads(r.stdout)
            assert [(n["node_id"], n["alive"], n["state"]) for n in rows] == [("n1", True, "alive")]


def test_bad_store_arguments_are_one_line_errors(tmp_path: Path) -> None:
    for args, says in (
        (["status", "--store", "bogus://x"], "unknown scheme 'bogus'"),
        (["status", "--store", "nonsense"], "is not a store URL"),
        (["status", "--store", f"sqlite://{tmp_path}/a.db", "--path", "b.db"], "do not go with"),
        (["status", "--store", "cql"], "--store cql needs --hosts"),
        (["bench", "-n", "10", "--store", "sqlite://"], "no SQLite file named"),
    ):
        r = dna_cli(*args)
        assert r.returncode != 0 and says in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("store", ["memory://", "sqlite"])
def test_bench_runs_on_a_store_url(store: str) -> None:
    r = dna_cli("bench", "-n", "3000", "--store", store, "--ceiling", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n"] == 3000 and out["puts_per_s"] > 0 and out["ceiling_rows_per_s"] > 0


@pytest.mark.cql
def test_status_of_a_missing_keyspace_is_an_error_and_creates_nothing() -> None:
    if not CQL_HOSTS:
        pytest.skip(NO_CQL_REASON)
    r = dna_cli("status", "--store", f"cql://{CQL_HOSTS}/dna_no_such_ks")
    assert r.returncode == 1 and "dna_no_such_ks does not exist" in r.stderr, r
    assert "Traceback" not in r.stderr


NO_DRIVER = r"""
import asyncio, sys
sys.modules["cassandra"] = None  # as if neither were installed
sys.modules["tqdm"] = None
import dna
from dna.examples import KVActor
from dna.store import open_store

async def main(path):
    async with dna.Node(store=open_store("sqlite://" + path)) as node:
        ref = node.ref(KVActor, "k")
        await ref.put("x", b"1")
        print("ok" if await ref.get("x") == b"1" else "wrong", flush=True)
    try:
        open_store("cql://127.0.0.1:9042/ks")
    except ImportError as exc:
        print("import error:", exc)

asyncio.run(main(sys.argv[1]))
"""


def test_dna_and_the_sqlite_store_need_no_cql_driver(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-c", NO_DRIVER, str(tmp_path / "a.db")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "ok"
    assert "pip install 'dna-actors[cql]'" in lines[1], lines


def test_the_cql_extra_and_no_hard_progress_bar_dependency() -> None:
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    deps = meta["project"]["dependencies"]
    assert [d.split(">")[0] for d in deps] == ["msgpack"]
    extras = meta["project"]["optional-dependencies"]
    assert any(d.startswith("scylla-driver") for d in extras["cql"])
    assert any(d.startswith("scylla-driver") for d in extras["test"])  # CI runs the CQL tests

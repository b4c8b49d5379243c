"""SQLiteStore beyond the shared contract: the file it accepts, node liveness
from OS locks (kill -9), faults of the file while running, group commit."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from tests.conftest import opened

import dna
from dna.errors import InterfaceError, NotOwner, StaleEpoch, StoreError, StoreUnavailable
from dna.store import ActorId
from dna.store.base import prefix_end as _prefix_end
from dna.store.sqlite import SQLiteStore

A = ActorId("ns", "Thing", "a")
# the child imports the same dna as this process: the installed wheel in CI, src/ in dev
SRC = str(Path(dna.__file__).resolve().parent.parent)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- the file


async def test_creates_a_marked_wal_database(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with opened(SQLiteStore(path)) as s:
        c = await s.claim(A)
        await s.commit(c, [("kv", "k", b"v")])
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            assert db.execute("PRAGMA application_id").fetchone()[0] == 0x444E4131
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            meta = dict(db.execute("SELECT k, v FROM meta").fetchall())
            assert meta == {"format": "dna-sqlite", "schema": "1"}
            assert db.execute("SELECT count(*) FROM data").fetchone()[0] == 1
        db.close()


async def test_garbage_file_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(os.urandom(8192))
    before = digest(path)
    with pytest.raises(StoreError, match=str(path)):
        await SQLiteStore(path).open("n")
    assert digest(path) == before
    assert os.listdir(tmp_path) == ["notes.db"]


async def test_garbage_with_sqlite_magic_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fake.db"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(8000))
    before = digest(path)
    with pytest.raises(StoreError, match=str(path)):
        await SQLiteStore(path).open("n")
    assert digest(path) == before


async def test_other_applications_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO users (name) VALUES ('ann')")
    db.close()
    before = digest(path)
    with pytest.raises(StoreError, match="another application") as info:
        await SQLiteStore(path).open("n")
    assert str(path) in str(info.value)
    assert digest(path) == before
    assert not (tmp_path / "app.db.nodes").exists()


async def test_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    async with opened(SQLiteStore(path)) as s:
        c = await s.claim(A)
        await s.commit(c, [("kv", "k", b"v")])
        assert await s.read(c, "kv", "k") == b"v"


async def test_unopenable_paths_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "dna.db"
    with pytest.raises(StoreUnavailable, match=str(missing.parent)):
        await SQLiteStore(missing).open("n")
    assert not missing.parent.exists()
    with pytest.raises(StoreError, match=str(tmp_path)):
        await SQLiteStore(tmp_path).open("n")  # a directory


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SQLiteStore(tmp_path / "x.db", synchronous="sometimes")
    with pytest.raises(ValueError):
        SQLiteStore(tmp_path / "x.db", busy_timeout_ms=-1)


async def test_closed_store_refuses_and_close_is_idempotent(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "dna.db", synchronous="normal")
    with pytest.raises(InterfaceError):
        await s.claim(A)
    await s.open("n")
    with pytest.raises(InterfaceError):
        await s.open("n")
    c = await s.claim(A)
    await s.close()
    await s.close()
    with pytest.raises(InterfaceError):
        await s.commit(c, [])
    with pytest.raises(InterfaceError):
        await s.read(c, "kv", "k")
    await s.open("n")  # a closed store may be opened again
    assert (await s.claim(A)).epoch == c.epoch + 1
    await s.close()


def test_prefix_end() -> None:
    assert _prefix_end("") is None
    assert _prefix_end("a/") == "a0"
    assert _prefix_end("a\U0010ffff") == "b"
    assert _prefix_end("\U0010ffff") is None
    assert _prefix_end("\ud7ff") == "\ue000"


# ---------------------------------------------------------------- nodes


async def test_node_id_is_open_once(tmp_path: Path) -> None:
    async with opened(SQLiteStore(tmp_path / "dna.db"), "same") as s:
        with pytest.raises(StoreError, match="already open"):
            await SQLiteStore(tmp_path / "dna.db").open("same")
        assert [(n.node_id, n.alive) for n in await s.nodes()] == [("same", True)]


async def test_racing_claims_of_two_nodes_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with opened(SQLiteStore(path), "a") as a, opened(SQLiteStore(path), "b") as b:
        for i in range(20):
            aid = ActorId("ns", "T", f"k{i}")
            got = await asyncio.gather(a.claim(aid), b.claim(aid), return_exceptions=True)
            wins = [g for g in got if not isinstance(g, BaseException)]
            assert len(wins) == 1, got
            assert all(isinstance(g, NotOwner) for g in got if g not in wins)


async def test_draining_nodes_actors_are_claimable(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with opened(SQLiteStore(path), "a") as a, opened(SQLiteStore(path), "b") as b:
        ca = await a.claim(A)
        with pytest.raises(NotOwner):
            await b.claim(A)
        await a.set_draining()
        await a.heartbeat(load=3)
        rec = {n.node_id: n for n in await b.nodes()}
        assert rec["a"].draining and rec["a"].alive and rec["a"].load == 3
        assert rec["a"].heartbeat == 1
        cb = await b.claim(A)
        assert cb.epoch == ca.epoch + 1
        with pytest.raises(StaleEpoch):
            await a.commit(ca, [("kv", "k", b"late")])


CHILD = r"""
import asyncio, sys
from dna.store import ActorId
from dna.store.sqlite import SQLiteStore

async def main(path, commit):
    s = SQLiteStore(path, commit=commit, apply_idle_ms=None)  # log: nothing applied before the kill
    await s.open("child", "127.0.0.1:1")
    c = await s.claim(ActorId("ns", "Thing", "a"))
    for b in range(10):
        await s.commit(c, [("kv", "%d-%04d" % (b, i), b"\x88test") for i in range(1000)])
    print(c.epoch, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.parametrize("commit", ["apply", "log"])
async def test_kill_9_owner_is_reclaimed_at_once_with_every_row(
    tmp_path: Path, commit: str
) -> None:
    path = tmp_path / "dna.db"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [SRC, env.get("PYTHONPATH", "")]
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), commit, stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"1", line
        async with opened(SQLiteStore(path, commit=commit), "parent") as s:
            with pytest.raises(NotOwner) as info:
                await s.claim(A)
            assert info.value.owner == "child"
            alive = {n.node_id: n.alive for n in await s.nodes()}
            assert alive == {"child": True, "parent": True}
            proc.kill()  # SIGKILL: no cleanup of any kind in the child
            await proc.wait()
            c = await s.claim(A)  # at once: no lease to wait out
            assert c.epoch == 2
            got = await s.list(c, "kv", limit=20_000)
            assert len(got) == 10_000
            assert got[0] == ("0-0000", b"\x88test") and got[-1][0] == "9-0999"
            assert [n.node_id for n in await s.nodes()] == ["parent"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# ---------------------------------------------------------------- faults of the file


async def test_read_only_file_refuses_commits_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with opened(SQLiteStore(path)) as s:
        c = await s.claim(A)
        await s.commit(c, [("kv", "acked", b"1")])
        os.chmod(path, 0o444)
        try:
            with pytest.raises(StoreUnavailable, match="read-only") as info:
                await s.commit(c, [("kv", "acked", None), ("kv", "lost", b"2")])
            assert str(path) in str(info.value)
            with pytest.raises(StoreUnavailable):
                await s.claim(ActorId("ns", "Thing", "other"))
            assert await s.read(c, "kv", "acked") == b"1"  # reads keep working
            assert await s.read(c, "kv", "lost") is None
        finally:
            os.chmod(path, 0o644)
        await s.commit(c, [("kv", "later", b"3")])
        assert [k for k, _ in await s.list(c, "kv")] == ["acked", "later"]


async def test_removed_file_refuses_commits_until_it_is_back(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    away = tmp_path / "moved.db"
    async with opened(SQLiteStore(path)) as s:
        c = await s.claim(A)
        await s.commit(c, [("kv", f"k{i}", b"v") for i in range(100)])
        path.rename(away)
        try:
            with pytest.raises(StoreUnavailable, match="removed"):
                await s.commit(c, [("kv", "gone", b"x")])
            with pytest.raises(StoreUnavailable, match="removed"):
                await s.release(c)
        finally:
            away.rename(path)
        await s.commit(c, [("kv", "back", b"y")])
        assert len(await s.list(c, "kv", limit=1000)) == 101
        assert await s.read(c, "kv", "gone") is None
    async with opened(SQLiteStore(path)) as s2:  # and it is all on disk
        c2 = await s2.claim(A)
        assert len(await s2.list(c2, "kv", limit=1000)) == 101


async def test_deleted_file_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    s = SQLiteStore(path)
    await s.open("n")
    c = await s.claim(A)
    path.unlink()
    with pytest.raises(StoreUnavailable, match=str(path)):
        await s.commit(c, [("kv", "k", b"v")])
    await s.close()  # never wedges


# ---------------------------------------------------------------- group commit


async def test_group_commit_refuses_only_the_stale_and_the_bad(tmp_path: Path) -> None:
    async with opened(SQLiteStore(tmp_path / "dna.db")) as s:
        claims = await asyncio.gather(*(s.claim(ActorId("ns", "T", f"k{i}")) for i in range(50)))
        stale = claims[10]
        claims[10] = await s.claim(stale.actor)
        writer = s._writer
        assert writer is not None
        before = writer.transactions
        results = await asyncio.gather(
            *(s.commit(c, [("kv", f"r{j}", b"x") for j in range(100)]) for c in claims),
            s.commit(stale, [("kv", "stale", b"x")]),
            s.commit(claims[20], [("kv", "bad-first", b"ok"), ("kv", "bad", {"no": 1})]),  # type: ignore[list-item]
            return_exceptions=True,
        )
        assert writer.transactions - before < 10  # 52 commits, a few transactions
        assert results[:50] == [None] * 50
        assert isinstance(results[50], StaleEpoch)
        assert type(results[51]) is StoreError
        for c in claims:
            assert len(await s.list(c, "kv", limit=1000)) == 100
        assert await s.read(claims[10], "kv", "stale") is None
        assert await s.read(claims[20], "kv", "bad-first") is None


async def test_commits_are_visible_to_another_process_on_return(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with opened(SQLiteStore(path), "a") as a, opened(SQLiteStore(path), "b") as b:
        c = await a.claim(A)
        for i in range(50):
            await a.commit(c, [("kv", "n", b"%d" % i)])
            assert await b.read(c, "kv", "n") == b"%d" % i


async def test_switch_interval_lowered_while_open_and_restored(tmp_path: Path) -> None:
    import sys

    before = sys.getswitchinterval()
    a = SQLiteStore(str(tmp_path / "a.db"))
    b = SQLiteStore(str(tmp_path / "b.db"), switch_interval=0.002)
    await a.open("n-a")
    await b.open("n-b")
    assert sys.getswitchinterval() <= 0.001
    await a.close()
    assert sys.getswitchinterval() <= 0.002  # b still holds it lowered
    await b.close()
    assert sys.getswitchinterval() == before
    with pytest.raises(ValueError):
        SQLiteStore(str(tmp_path / "c.db"), switch_interval=0)


# ---------------------------------------------------------------- one file, two paths


HOLDER = r"""
import asyncio, sys
from dna.store import ActorId
from dna.store.sqlite import SQLiteStore

async def main(path):
    s = SQLiteStore(path)
    await s.open("holder", "127.0.0.1:1")
    c = await s.claim(ActorId("ns", "Thing", "a"))
    print(c.epoch, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.parametrize("how", ["symlinked file", "symlinked directory"])
async def test_one_file_opened_by_two_paths_is_one_cluster(tmp_path: Path, how: str) -> None:
    real_dir, other = tmp_path / "data", tmp_path / "elsewhere"
    real_dir.mkdir()
    other.mkdir()
    if how == "symlinked file":
        alias = other / "link.db"
        alias.symlink_to(real_dir / "app.db")
    else:
        (other / "d").symlink_to(real_dir, target_is_directory=True)
        alias = other / "d" / "app.db"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(real_dir / "app.db"),
        stdout=asyncio.subprocess.PIPE, env=env,
    )
    try:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"1"
        async with opened(SQLiteStore(alias), "other") as s:
            alive = {n.node_id: n.alive for n in await s.nodes()}
            assert alive == {"holder": True, "other": True}
            with pytest.raises(NotOwner) as info:  # the holder is alive: no second activation
                await s.claim(A)
            assert info.value.owner == "holder"
            proc.kill()
            await proc.wait()
            assert (await s.claim(A)).epoch == 2  # and dead at once once killed
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

"""The SQLite store's log-first commit path (``commit="log"``) on a real file.

What it must keep: an acknowledged commit is durable as one log record before
its rows reach the data table; reads, claims (of any process, on either path),
dumps and destroys see or settle the unapplied records; timer rows are due at
once; the log stays bounded; an idle writer drains it. The file is inspected
with Python's own ``sqlite3`` module, not through the store.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import opened

from dna.errors import StaleEpoch
from dna.store import ActorId, open_store
from dna.store.base import TIMERS_MODULE
from dna.store.sqlite import SQLiteStore

A = ActorId("ns", "Thing", "a")


def counts(path: Path) -> tuple[int, int]:
    """(log records, data rows) in the file, seen by another connection."""
    db = sqlite3.connect(path)
    try:
        log = db.execute("SELECT count(*) FROM log").fetchone()[0]
        data = db.execute("SELECT count(*) FROM data WHERE module = 'kv'").fetchone()[0]
        return int(log), int(data)
    finally:
        db.close()


def held(path: Path, **kw: object) -> SQLiteStore:
    """A log-first store whose applier never runs while idle."""
    return SQLiteStore(path, commit="log", apply_idle_ms=None, **kw)  # type: ignore[arg-type]


async def test_a_commit_is_one_log_record_and_a_read_sees_it(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with opened(held(path)) as s:
        c = await s.claim(A)
        await s.commit(c, [("kv", str(i), b"v%d" % i) for i in range(100)])
        await s.commit(c, [("kv", "7", None), ("kv", "8", b"new")])
        assert counts(path) == (2, 0)  # acknowledged: in the log, not in the data table
        assert await s.read(c, "kv", "8") == b"new"
        assert await s.read(c, "kv", "7") is None
        assert counts(path) == (0, 99)  # the read applied the actor's records first
        got = await s.list(c, "kv", limit=1000)
        assert len(got) == 99 and ("8", b"new") in got


async def test_list_and_dump_see_unapplied_records(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with opened(held(path)) as s:
        c = await s.claim(A)
        await s.commit(c, [("kv", "a", b"1"), ("kv", "b", b"2")])
        assert await s.list(c, "kv") == [("a", b"1"), ("b", b"2")]
        await s.commit(c, [("kv", "c", b"3")])
        assert await s.dump(A, 10) == [("kv", "a", b"1"), ("kv", "b", b"2"), ("kv", "c", b"3")]
        assert counts(path)[0] == 0


async def test_a_dump_by_a_store_on_the_apply_path_sees_a_live_owners_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dna.db"
    async with opened(held(path), "owner") as a, opened(SQLiteStore(path), "admin") as b:
        ca = await a.claim(A)
        await a.commit(ca, [("kv", "k", b"v")])
        assert counts(path) == (1, 0)
        assert await b.dump(A, 10) == [("kv", "k", b"v")]
        await a.commit(ca, [("kv", "k", b"w")])  # the owner goes on after the dump applied
        assert await a.read(ca, "kv", "k") == b"w"


@pytest.mark.parametrize("heir_commit", ["apply", "log"])
# replayed a record at a time, a few records at a time (the last chunk holds the
# delete), or all at once
@pytest.mark.parametrize("replay_rows", [1, 450, 20_000])
async def test_a_claim_by_another_store_replays_every_acknowledged_record(
    tmp_path: Path, heir_commit: str, replay_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dna.store.sqlite import _journal

    monkeypatch.setattr(_journal, "REPLAY_ROWS", replay_rows)
    path = tmp_path / "dna.db"
    a = held(path)
    await a.open("a")
    try:
        ca = await a.claim(A)
        for b in range(5):
            await a.commit(ca, [("kv", f"{b}-{i}", b"x") for i in range(200)])
        await a.commit(ca, [("kv", "0-0", None)])
    finally:
        await a.close()  # closing applies nothing: the records wait for the next claim
    assert counts(path) == (6, 0)
    async with opened(SQLiteStore(path, commit=heir_commit), "b") as b:
        cb = await b.claim(A)
        assert counts(path) == (0, 999)
        assert await b.read(cb, "kv", "0-0") is None
        assert await b.read(cb, "kv", "4-199") == b"x"
        with pytest.raises(StaleEpoch):  # the old owner's claim is fenced as ever
            await b.commit(ca, [("kv", "late", b"x")])


async def test_a_stale_epoch_appends_nothing(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with opened(held(path)) as s:
        c1 = await s.claim(A)
        c2 = await s.claim(A)
        with pytest.raises(StaleEpoch):
            await s.commit(c1, [("kv", "x", b"old")])
        assert counts(path) == (0, 0)
        await s.commit(c2, [("kv", "x", b"new")])
        assert await s.read(c2, "kv", "x") == b"new"


async def test_timer_rows_skip_the_log_and_are_due_at_once(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with opened(held(path)) as s:
        c = await s.claim(A)
        due = (1000).to_bytes(8, "big") + b"\x00" * 64
        await s.commit(c, [("kv", "k", b"v"), (TIMERS_MODULE, "t", due)])
        assert counts(path) == (1, 0)  # the kv row waits in the log
        got = await s.due_timers(2000, 10)
        assert [(t.actor, t.name) for t in got] == [(A, "t")]


async def test_destroy_drops_unapplied_records(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with opened(held(path)) as s:
        c = await s.claim(A)
        await s.commit(c, [("kv", "k", b"v")])
        await s.destroy(c)
        assert counts(path) == (0, 0)
        c2 = await s.claim(A)
        assert await s.read(c2, "kv", "k") is None
        assert s.log_stats()["backlog"] == 0


async def test_the_log_is_bounded_commits_wait_for_the_applier(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with opened(held(path, log_max_rows=1000, apply_rows=400)) as s:
        c = await s.claim(A)
        most = 0
        for b in range(30):
            await s.commit(c, [("kv", f"{b}-{i:03d}", b"x") for i in range(150)])
            db = sqlite3.connect(path)
            rows = db.execute("SELECT coalesce(sum(n), 0) FROM log").fetchone()[0]
            db.close()
            most = max(most, rows)
        assert 0 < most < 1000 + 150  # at most the bound plus the commit that crossed it
        assert counts(path)[1] > 0  # the applier ran while commits went on
        assert len(await s.list(c, "kv", limit=10_000)) == 4500


async def test_an_idle_writer_drains_the_log(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with opened(SQLiteStore(path, commit="log", apply_idle_ms=1, apply_rows=100)) as s:
        c = await s.claim(A)
        await s.commit(c, [("kv", str(i), b"x") for i in range(1000)])
        deadline = time.monotonic() + 30
        while counts(path) != (0, 1000):  # polled against a deadline, not slept on
            assert time.monotonic() < deadline, counts(path)
            await asyncio.sleep(0.01)
        assert s.log_stats()["backlog"] == 0 and s.log_stats()["applied"] == 1000


async def test_apply_log_drains_on_demand_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with opened(held(path)) as s:
        c = await s.claim(A)
        for b in range(3):
            await s.commit(c, [("kv", f"{b}-{i}", b"x") for i in range(10)])
        assert s.log_stats()["backlog"] == 30
        assert await s.apply_log() == 30
        assert counts(path) == (0, 30) and s.log_stats()["backlog"] == 0


async def test_a_log_first_file_is_marked_for_newer_readers_only(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    async with opened(SQLiteStore(path)):
        pass
    db = sqlite3.connect(path)
    assert db.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()[0] == "1"
    db.close()
    async with opened(held(path)):
        pass
    db = sqlite3.connect(path)
    assert db.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()[0] == "2"
    db.close()


async def test_a_reopened_store_applies_what_a_crash_left(tmp_path: Path) -> None:
    path = tmp_path / "dna.db"
    a = held(path)
    await a.open("a")
    ca = await a.claim(A)
    await a.commit(ca, [("kv", str(i), b"x") for i in range(50)])
    await a.close()
    async with opened(SQLiteStore(path, commit="log", apply_idle_ms=1), "b") as b:
        assert b.log_stats()["backlog"] == 50  # counted at open
        deadline = time.monotonic() + 30
        while counts(path) != (0, 50):
            assert time.monotonic() < deadline, counts(path)
            await asyncio.sleep(0.01)


def test_url_options_select_the_path() -> None:
    s = open_store("sqlite:///tmp/x.db?commit=log&log_max_rows=10&apply_rows=5&apply_idle_ms=none")
    assert isinstance(s, SQLiteStore)
    assert (s.commit_path, s.log_max_rows, s.apply_rows, s.apply_idle_ms) == ("log", 10, 5, None)
    with pytest.raises(ValueError):
        SQLiteStore("/tmp/x.db", commit="later")
    with pytest.raises(ValueError):
        SQLiteStore("/tmp/x.db", commit="log", log_max_rows=0)


# ---------------------------------------------------------------- the record format

_UPSERT = ("INSERT INTO data (actor, module, k, v) VALUES (?, ?, ?, ?) "
           "ON CONFLICT DO UPDATE SET v = excluded.v")
_DELETE = "DELETE FROM data WHERE actor = ? AND module = ? AND k = ?"
ROWS = [("kv", "a", b"1"), ("kv", "é\u2603", b""), ("m", "", b"\x00" * 300),
        ("kv", "a", None), ("kv", "b", b"2"), ("kv", "b", b"3"), ("kv", "zz", None)]


def _conn(path: Path) -> Any:
    from dna.store.sqlite._schema import open_database

    return open_database(str(path), 1000, "NORMAL")


def _data(conn: Any, actor: int) -> list[Any]:
    return conn.execute("SELECT module, k, v FROM data WHERE actor = ? ORDER BY module, k",
                        (actor,))


def test_a_record_applies_exactly_as_its_rows(tmp_path: Path) -> None:
    from dna.store.sqlite._c import encode_rows

    conn = _conn(tmp_path / "dna.db")
    try:
        conn.commit_rows(_UPSERT, _DELETE, 1, ROWS)
        assert conn.commit_record(_UPSERT, _DELETE, 2, encode_rows(ROWS)[0]) == len(ROWS)
        assert _data(conn, 1) == _data(conn, 2) == [
            ("kv", "b", b"3"), ("kv", "é\u2603", b""), ("m", "", b"\x00" * 300)]
        assert conn.commit_record(_UPSERT, _DELETE, 3, encode_rows([])[0]) == 0
        body, n = encode_rows(ROWS, "kv")  # left out: every kv row
        assert n == 1 and conn.commit_record(_UPSERT, _DELETE, 4, body) == 1
        assert _data(conn, 4) == [("m", "", b"\x00" * 300)]
    finally:
        conn.close()


def test_a_damaged_record_is_refused_whole(tmp_path: Path) -> None:
    from dna.store.sqlite._c import SqliteError, encode_rows

    conn = _conn(tmp_path / "dna.db")
    body = encode_rows(ROWS)[0]
    try:
        for cut in range(len(body)):  # every truncation, and a byte too many
            for bad in (body[:cut], body + b"x"):
                with pytest.raises(SqliteError) as info:
                    conn.commit_record(_UPSERT, _DELETE, 1, bad)
                assert info.value.primary == 11  # SQLITE_CORRUPT
        assert _data(conn, 1) == []
        with pytest.raises(TypeError):
            encode_rows([("kv", b"not str", b"v")])
    finally:
        conn.close()


def test_records_apply_in_order_each_to_its_actor_in_one_call(tmp_path: Path) -> None:
    from dna.store.sqlite._c import SqliteError, encode_rows

    conn = _conn(tmp_path / "dna.db")
    first = encode_rows([("kv", "a", b"old"), ("kv", "x", b"1")])[0]
    second = encode_rows([("kv", "a", b"new"), ("kv", "x", None), ("kv", "y", b"2")])[0]
    empty = encode_rows([])[0]
    try:
        # the actor changes mid-call; an empty record in between; a later record wins
        assert conn.commit_records(_UPSERT, _DELETE, [
            (1, first), (2, first), (1, empty), (1, second), (3, second)]) == 10
        assert _data(conn, 1) == [("kv", "a", b"new"), ("kv", "y", b"2")]
        assert _data(conn, 2) == [("kv", "a", b"old"), ("kv", "x", b"1")]
        assert _data(conn, 3) == [("kv", "a", b"new"), ("kv", "y", b"2")]
        assert conn.commit_records(_UPSERT, _DELETE, []) == 0
        assert conn.commit_records(_UPSERT, _DELETE, [(4, empty), (5, empty)]) == 0
        # a damaged record anywhere: nothing of the call is applied, not even the good ones
        for bad in (second[:-1], b"DNR1" + second[4:] + b"x", b"not a record"):
            with pytest.raises(SqliteError) as info:
                conn.commit_records(_UPSERT, _DELETE, [(6, first), (6, bad), (7, first)])
            assert info.value.primary == 11  # SQLITE_CORRUPT
        assert _data(conn, 6) == _data(conn, 7) == []
        with pytest.raises(TypeError):
            conn.commit_records(_UPSERT, _DELETE, [(8, "not bytes")])
    finally:
        conn.close()


async def test_a_claim_over_a_damaged_record_is_refused_and_applies_nothing(
    tmp_path: Path,
) -> None:
    from dna.errors import StoreError

    path = tmp_path / "dna.db"
    a = held(path)
    await a.open("a")
    ca = await a.claim(A)
    await a.commit(ca, [("kv", "k", b"v")])
    await a.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE log SET body = substr(body, 1, length(body) - 1)")
    db.commit()
    db.close()
    async with opened(SQLiteStore(path), "b") as b:
        with pytest.raises(StoreError):
            await b.claim(A)
        assert (await b.owner_of(A))[1] == ca.epoch  # not granted
    assert counts(path) == (1, 0)

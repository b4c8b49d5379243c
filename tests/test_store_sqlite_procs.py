"""SQLiteStore with several real processes on one file: many opening a fresh file
at once, and a process stopped (SIGSTOP) while it holds the write transaction."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import opened

import dna
from dna.errors import StoreUnavailable
from dna.store import ActorId
from dna.store.sqlite import SQLiteStore

SRC = str(Path(dna.__file__).resolve().parent.parent)
A = ActorId("ns", "Thing", "a")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC, env.get("PYTHONPATH", "")])
    return env


# Waits for the go file (so every process starts together), opens, claims its own
# actor, commits, closes; prints "ok" or the error.
OPENER = r"""
import asyncio, os, sys, time
from dna.store import ActorId
from dna.store.sqlite import SQLiteStore

async def main(path, go, me):
    print("ready", flush=True)  # imports done: the parent touches the go file after all say so
    while not os.path.exists(go):
        time.sleep(0.001)
    s = SQLiteStore(path)
    try:
        await s.open(me)
        c = await s.claim(ActorId("ns", "Thing", me))
        await s.commit(c, [("kv", "k", b"v")])
        await s.close()
    except Exception as exc:
        print("error", type(exc).__name__, exc, flush=True)
        return
    print("ok", flush=True)

asyncio.run(main(*sys.argv[1:]))
"""

N_PROCS = int(os.environ.get("DNA_TEST_OPEN_PROCS", "8"))
ROUNDS = int(os.environ.get("DNA_TEST_OPEN_ROUNDS", "6"))


@pytest.mark.timeout(300)
async def test_processes_opening_a_fresh_file_at_once_all_succeed(tmp_path: Path) -> None:
    failures = []
    for r in range(ROUNDS):
        path, go = tmp_path / f"fresh{r}.db", tmp_path / f"go{r}"
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", OPENER, str(path), str(go), f"n{i}",
                stdout=asyncio.subprocess.PIPE, env=child_env(),
            )
            for i in range(N_PROCS)
        ]
        for p in procs:  # every interpreter is up and polling: the go file lines them up
            assert p.stdout is not None
            assert await asyncio.wait_for(p.stdout.readline(), 60) == b"ready\n"
        go.touch()
        for p in procs:
            out, _ = await asyncio.wait_for(p.communicate(), 60)
            if out.strip() != b"ok":
                failures.append((r, out.decode().strip()))
        async with opened(SQLiteStore(path), "check") as s:
            assert {n.node_id for n in await s.nodes()} == {"check"}
            for i in range(N_PROCS):
                c = await s.claim(ActorId("ns", "Thing", f"n{i}"))
                assert c.epoch == 2 and await s.read(c, "kv", "k") == b"v"
    assert not failures, failures


# A process creating a fresh DNA database, caught inside its creation transaction:
# it holds the write lock with the schema written but not committed until told.
CREATOR = r"""
import sqlite3, sys
from dna.store.sqlite._schema import _SCHEMA
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.executescript("BEGIN IMMEDIATE;" + _SCHEMA)  # the transaction stays open
print("creating", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
print("created", flush=True)
"""


async def test_opening_while_another_process_creates_the_file_waits_for_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fresh.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CREATOR, str(path), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, env=child_env(),
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"creating"
        s = SQLiteStore(path, busy_timeout_ms=5000)
        opening = asyncio.ensure_future(s.open("n"))
        # the creator's transaction lasts a while: the open must wait, not fail
        done, _ = await asyncio.wait([opening], timeout=0.3)
        if done:
            opening.result()  # raises the error the open failed with
        proc.stdin.write(b"commit\n")
        await proc.stdin.drain()
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"created"
        await asyncio.wait_for(opening, 10)
        try:
            c = await s.claim(A)
            await s.commit(c, [("kv", "k", b"v")])
        finally:
            await s.close()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


# Holds the database's write lock in an open write transaction, then stops itself,
# as a node stopped in the middle of a commit would.
STOPPER = r"""
import os, signal, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("UPDATE nodes SET load = load WHERE 0")
print("holding", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
db.execute("COMMIT")
print("done", flush=True)
"""


@pytest.mark.timeout(120)
async def test_a_stopped_writer_makes_commits_fail_retryably_after_the_busy_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dna.db"
    busy_ms = 600
    async with opened(SQLiteStore(path, busy_timeout_ms=busy_ms), "n") as s:
        c = await s.claim(A)
        await s.commit(c, [("kv", "before", b"1")])
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", STOPPER, str(path), stdout=asyncio.subprocess.PIPE,
            env=child_env(),
        )
        try:
            assert proc.stdout is not None
            assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"holding"
            # every commit fails, retryably, within two busy timeouts (one for the
            # group ahead of it, one for its own), and several in a row do too
            t0 = time.monotonic()
            results = await asyncio.gather(
                *(s.commit(c, [("kv", f"k{i}", b"x")]) for i in range(5)),
                return_exceptions=True,
            )
            took = time.monotonic() - t0
            assert all(isinstance(e, StoreUnavailable) for e in results), results
            assert all("busy timeout" in str(e) for e in results), results
            assert isinstance(results[0], dna.errors.Retryable)
            assert busy_ms / 1000 * 0.9 <= took < 2 * busy_ms / 1000 + 1.0, took
            t0 = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await s.commit(c, [("kv", "again", b"x")])
            assert time.monotonic() - t0 < 2 * busy_ms / 1000 + 1.0
            # reads never wait for the writer (WAL)
            t0 = time.monotonic()
            assert await s.read(c, "kv", "before") == b"1"
            assert time.monotonic() - t0 < 0.2
            proc.send_signal(signal.SIGCONT)  # continued: it commits and lets go
            assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"done"
            await proc.wait()
            await s.commit(c, [("kv", "after", b"1")])
            assert await s.read(c, "kv", "after") == b"1"
            assert await s.read(c, "kv", "k0") is None  # the failed commits wrote nothing
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                await proc.wait()

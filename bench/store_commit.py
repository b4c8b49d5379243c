"""Commit throughput of SQLiteStore against the raw SQLite binding on the same disk.

    PYTHONPATH=src python bench/store_commit.py [--batches 40] [--rows 5000] [--actors 1]

Raw: one transaction per batch through ``_sqlite_c.Connection.commit_rows``
(the store's own binding, no GIL while stepping), WAL, synchronous=FULL.
Store: ``await store.commit(claim, rows)`` in a loop (with
``--actors K``, K commits of one batch each run concurrently: group commit).
Prints rows/s; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time

from dna.store import ActorId
from dna.store.sqlite import SQLiteStore
from dna.store.sqlite._c import Connection

VALUE = b"\x88test"  # msgpack-ish small value, as the seed bench writes


def batches(n: int, size: int) -> list[list[tuple[str, str, bytes]]]:
    return [[("kv", str(i), VALUE) for i in range(b * size, (b + 1) * size)] for b in range(n)]


def raw(path: str, work: list[list[tuple[str, str, bytes]]]) -> float:
    conn = Connection(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE data (actor INTEGER, module TEXT, k TEXT, v BLOB, "
        "PRIMARY KEY (actor, module, k)) WITHOUT ROWID"
    )
    sql = "INSERT INTO data VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET v = excluded.v"
    delete = "DELETE FROM data WHERE actor = ? AND module = ? AND k = ?"
    t0 = time.perf_counter()
    for rows in work:
        conn.execute("BEGIN IMMEDIATE")
        conn.commit_rows(sql, delete, 1, rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return sum(map(len, work)) / elapsed


async def store(path: str, work: list[list[tuple[str, str, bytes]]], actors: int) -> float:
    s = SQLiteStore(path)
    await s.open("bench")
    try:
        claims = [await s.claim(ActorId("bench", "T", str(j))) for j in range(actors)]
        t0 = time.perf_counter()
        for rows in work:
            await asyncio.gather(*(s.commit(c, rows) for c in claims))
        elapsed = time.perf_counter() - t0
    finally:
        await s.close()
    return sum(map(len, work)) * actors / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--rows", type=int, default=5000)
    p.add_argument("--actors", type=int, default=1)
    args = p.parse_args()
    work = batches(args.batches, args.rows)
    tmp = tempfile.mkdtemp(prefix="dna-store-bench-")
    try:
        base = raw(os.path.join(tmp, "raw.db"), work)
        got = asyncio.run(store(os.path.join(tmp, "store.db"), work, args.actors))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"raw binding     {base:>10,.0f} rows/s  (batches of {args.rows})")
    share = f"{got / base:.0%} of raw"
    print(f"SQLiteStore     {got:>10,.0f} rows/s  ({args.actors} actor(s), {share})")


if __name__ == "__main__":
    main()

"""Commit throughput of SQLiteStore against raw apsw on the same disk.

    PYTHONPATH=src python bench/store_commit.py [--batches 40] [--rows 5000] [--actors 1]

Raw apsw: one transaction per batch of ``executemany`` upserts, WAL,
synchronous=FULL. Store: ``await store.commit(claim, rows)`` in a loop (with
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

import apsw

from dna.store import ActorId
from dna.store.sqlite import SQLiteStore

VALUE = b"\x88test"  # msgpack-ish small value, as the seed bench writes


def batches(n: int, size: int) -> list[list[tuple[str, str, bytes]]]:
    return [[("kv", str(i), VALUE) for i in range(b * size, (b + 1) * size)] for b in range(n)]


def raw_apsw(path: str, work: list[list[tuple[str, str, bytes]]]) -> float:
    conn = apsw.Connection(path)
    conn.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE data (actor INTEGER, module TEXT, k TEXT, v BLOB, "
        "PRIMARY KEY (actor, module, k)) WITHOUT ROWID"
    )
    sql = "INSERT INTO data VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET v = excluded.v"
    t0 = time.perf_counter()
    for rows in work:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, [(1, m, k, v) for m, k, v in rows])
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
        raw = raw_apsw(os.path.join(tmp, "raw.db"), work)
        got = asyncio.run(store(os.path.join(tmp, "store.db"), work, args.actors))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"raw apsw        {raw:>10,.0f} rows/s  (batches of {args.rows})")
    print(f"SQLiteStore     {got:>10,.0f} rows/s  ({args.actors} actor(s), {got / raw:.0%} of raw)")


if __name__ == "__main__":
    main()

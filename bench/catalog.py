"""Paging the actor catalog: how fast a full walk lists actors, on SQLite (and CQL).

    PYTHONPATH=src python bench/catalog.py [--actors 1000000] [--limit 100 1000]
        [--types 4] [--cql HOST:PORT --cql-actors 20000]

SQLite: the actors are written straight into a fresh database file (one
transaction through the store's own binding; a claim per actor would measure
claims, not listing), spread over ``--types`` types in two namespaces. Then
``Node.catalog`` walks every page for each ``--limit``: all actors, and the
actors of one type. CQL (``--cql``): ``--cql-actors`` actors are written as
plain static rows of ``actor_data`` in a keyspace of their own, dropped
afterwards, and walked the same way. Prints rows/s; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from typing import Any

import dna
from dna.store.sqlite import SQLiteStore
from dna.store.sqlite._c import Connection


async def walk(node: dna.Node, limit: int, **filters: Any) -> tuple[int, float, int]:
    """(entries, seconds, pages) of one full walk."""
    t0 = time.perf_counter()
    n = pages = 0
    after = None
    while True:
        page = await node.catalog(after=after, limit=limit, **filters)
        n += len(page)
        pages += 1
        if page.next is None:
            return n, time.perf_counter() - t0, pages
        after = page.next


def fill_sqlite(path: str, actors: int, types: int) -> int:
    """Write the actors; the file's size in bytes."""
    conn = Connection(path)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO actors (namespace, type_name, key, owner, epoch, claimed_at) "
        "VALUES (?, ?, ?, NULL, 1, 0)",
        ((f"ns{i % 2}", f"Type{i % types}", f"actor-{i:08d}") for i in range(actors)),
    )
    conn.execute("COMMIT")
    conn.close()
    return os.path.getsize(path)


async def report(node: dna.Node, label: str, limits: list[int], **filters: Any) -> None:
    for limit in limits:
        n, secs, pages = await walk(node, limit, **filters)
        print(f"{label:<34} limit {limit:>5}: {n:>9,} actors in {pages:>6,} pages, "
              f"{secs:6.2f} s, {n / secs:>10,.0f} rows/s, {secs / pages * 1e3:6.2f} ms/page")


async def bench_sqlite(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="dna-catalog-")
    path = os.path.join(tmp, "catalog.db")
    try:
        store = SQLiteStore(path)
        await store.open("setup")  # the schema and the catalog index
        await store.close()
        t0 = time.perf_counter()
        size = fill_sqlite(path, args.actors, args.types)
        print(f"sqlite: wrote {args.actors:,} actors in {time.perf_counter() - t0:.1f} s "
              f"({size / 2**20:.0f} MiB)")
        async with dna.Node(store=SQLiteStore(path)) as node:
            await report(node, "sqlite, every actor", args.limit)
            await report(node, f"sqlite, one type of {args.types}", args.limit, type="Type1")
            await report(node, "sqlite, one namespace of 2", args.limit, namespace="ns1")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def bench_cql(args: argparse.Namespace) -> None:
    from cassandra.cluster import Cluster
    from cassandra.concurrent import execute_concurrent_with_args

    from dna.store.cql import ScyllaStore

    host, _, port = args.cql.partition(":")
    ks = f"dna_catalog_bench_{os.getpid()}"
    cluster = Cluster([host], port=int(port or 9042))
    session = cluster.connect()
    store = ScyllaStore([args.cql], keyspace=ks)
    try:
        await store.open("setup")
        await store.close()
        insert = session.prepare(
            f"INSERT INTO {ks}.actor_data (namespace, type_name, key, owner, epoch, claimed_at) "
            "VALUES (?, ?, ?, null, 1, toTimestamp(now()))"
        )
        t0 = time.perf_counter()
        rows = ((f"ns{i % 2}", f"Type{i % args.types}", f"actor-{i:08d}")
                for i in range(args.cql_actors))
        execute_concurrent_with_args(session, insert, rows, concurrency=64)
        print(f"cql: wrote {args.cql_actors:,} actors in {time.perf_counter() - t0:.1f} s")
        async with dna.Node(store=ScyllaStore([args.cql], keyspace=ks)) as node:
            await report(node, "cql, every actor", args.limit)
            await report(node, f"cql, one type of {args.types}", args.limit, type="Type1")
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {ks}")
        cluster.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--actors", type=int, default=1_000_000)
    p.add_argument("--limit", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--types", type=int, default=4)
    p.add_argument("--cql", metavar="HOST:PORT", help="also walk a CQL store")
    p.add_argument("--cql-actors", type=int, default=20_000)
    args = p.parse_args()
    asyncio.run(bench_sqlite(args))
    if args.cql:
        asyncio.run(bench_cql(args))


if __name__ == "__main__":
    main()

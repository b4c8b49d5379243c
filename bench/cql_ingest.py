"""CQL ceilings: what the raw driver achieves, next to what ScyllaStore achieves.

    python bench/cql_ingest.py --hosts 127.0.0.1:9042
    python bench/cql_ingest.py --hosts 127.0.0.1:9042 --rows 200000 --batch 5000 --json

Figures (medians of ``--rounds``, raw and store alternating), on fresh actors:
- raw fenced ingest: rows as fenced single-partition batches of ``--batch``
  rows, one batch in flight per actor, straight through the driver;
- store commit ingest: the same rows through ``ScyllaStore.commit``;
- raw claims: first-claim LWTs of fresh actors, ``--concurrency`` in flight;
- store claims: the same number of ``ScyllaStore.claim`` calls, as many in flight.

A benchmark, not a test: it prints figures and asserts nothing about speed.
The raw parts live in ``bench/_cql_raw.py``, outside the package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Sequence

import _cql_raw  # bench/_cql_raw.py: this script's directory is on sys.path

from dna.store import ActorId, Row
from dna.store.cql import ScyllaStore

VALUE = b"\xc4\x04test"  # msgpack of b"test", as in `dna bench`


async def raw_fenced_ingest(
    hosts: Sequence[str], keyspace: str, n: int, batch_size: int, *, actors: int = 1
) -> float:
    """Rows/s of the raw driver: ``n`` rows as fenced batches of ``batch_size`` rows."""
    return await _cql_raw.raw_fenced_ingest(hosts, keyspace, n, batch_size, actors=actors)


async def raw_claims(
    hosts: Sequence[str], keyspace: str, n: int, *, concurrency: int = 256
) -> float:
    """Claims/s of the raw driver: ``n`` pipelined first-claim LWTs."""
    return await _cql_raw.raw_claims(hosts, keyspace, n, concurrency=concurrency)


async def store_commit_ingest(
    hosts: Sequence[str], keyspace: str, n: int, batch_size: int, *, actors: int = 1
) -> float:
    """Rows/s of ``ScyllaStore.commit`` for the same rows, one commit in flight per actor."""
    store = ScyllaStore(hosts, keyspace, heartbeat_interval=None)
    await store.open(f"bench-{uuid.uuid4().hex[:12]}")
    try:
        run = uuid.uuid4().hex[:12]
        claims = [
            await store.claim(ActorId("bench", "store_ingest", f"{run}-{j}")) for j in range(actors)
        ]
        batches: list[list[Row]] = [
            [("kv", str(i), VALUE) for i in range(start, min(start + batch_size, n))]
            for start in range(0, n, batch_size)
        ]

        async def one_actor(j: int) -> None:
            for b in batches[j :: len(claims)]:
                await store.commit(claims[j], b)

        t0 = time.perf_counter()
        await asyncio.gather(*(one_actor(j) for j in range(len(claims))))
        return n / (time.perf_counter() - t0)
    finally:
        await store.close()


async def store_claims(
    hosts: Sequence[str], keyspace: str, n: int, *, concurrency: int = 256
) -> float:
    """Claims/s of ``ScyllaStore.claim`` on fresh actors, ``concurrency`` in flight."""
    store = ScyllaStore(hosts, keyspace, heartbeat_interval=None)
    await store.open(f"bench-{uuid.uuid4().hex[:12]}")
    try:
        run = uuid.uuid4().hex[:12]
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await store.claim(ActorId("bench", "store_claim", f"{run}-{i}"))

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - t0)
    finally:
        await store.close()


async def main(args: argparse.Namespace) -> dict[str, float]:
    hosts, ks = args.hosts.split(","), args.keyspace
    if args.warmup:  # the server's JIT, memtables and caches first
        if args.rows:
            await raw_fenced_ingest(hosts, ks, max(args.rows // 4, args.batch), args.batch)
        if args.claims:
            await raw_claims(hosts, ks, max(args.claims // 4, 100), concurrency=args.concurrency)
    runs: dict[str, list[float]] = {}
    for _ in range(args.rounds):  # raw and store alternate, so drift hits both
        if args.rows:
            runs.setdefault("raw_fenced_rows_per_s", []).append(
                await raw_fenced_ingest(hosts, ks, args.rows, args.batch, actors=args.actors)
            )
            runs.setdefault("store_commit_rows_per_s", []).append(
                await store_commit_ingest(hosts, ks, args.rows, args.batch, actors=args.actors)
            )
        if args.claims:
            runs.setdefault("raw_claims_per_s", []).append(
                await raw_claims(hosts, ks, args.claims, concurrency=args.concurrency)
            )
            runs.setdefault("store_claims_per_s", []).append(
                await store_claims(hosts, ks, args.claims, concurrency=args.concurrency)
            )
    out = {name: statistics.median(values) for name, values in runs.items()}
    if args.rows:
        out["commit_ratio"] = out["store_commit_rows_per_s"] / out["raw_fenced_rows_per_s"]
    if args.claims:
        out["claim_ratio"] = out["store_claims_per_s"] / out["raw_claims_per_s"]
    return out


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", default="127.0.0.1:9042", help="host:port[,host:port...]")
    p.add_argument("--keyspace", default="dna_bench")
    p.add_argument("--rows", type=int, default=100_000, help="rows to ingest (0: skip)")
    p.add_argument("--batch", type=int, default=5_000, help="rows per fenced batch")
    p.add_argument("--actors", type=int, default=1, help="actors (one batch in flight each)")
    p.add_argument("--claims", type=int, default=10_000, help="claims to run (0: skip)")
    p.add_argument("--concurrency", type=int, default=256, help="claims in flight")
    p.add_argument("--rounds", type=int, default=3, help="repeat; medians are printed")
    p.add_argument("--no-warmup", dest="warmup", action="store_false", help="time a cold server")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    out = asyncio.run(main(args))
    if args.json:
        print(json.dumps(out))
        return
    for name, value in out.items():
        print(f"{name:>26}: {value:,.2f}" if "ratio" in name else f"{name:>26}: {value:,.0f}")


if __name__ == "__main__":
    cli()

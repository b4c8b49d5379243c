"""Durable timers (``dna.storage.Timers``): figures, no assertions.

    PYTHONPATH=src python bench/timers.py [--store sqlite|cql] [--actors 10000]
        [--per 10] [--rate 1000] [--seconds 10] [--gc node|cpython|both] [--rounds 1]

- fire rate: ``actors * per`` timers already due (armed by one node whose
  scanner is idle, then stopped), fired by a fresh node: timers/s from its
  start until every hook has committed;
- lateness at a steady ``rate`` timers/s for ``seconds``: how long after its
  due instant each hook ran (p50, p99, max), at two scan intervals;
- storage bytes per pending timer (SQLite: pages in use, before and after
  arming, over the number of timers).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from typing import Any

import dna
from dna._gc import DEFAULT_THRESHOLD
from dna.storage import KV, Timers


class Counter:
    def __init__(self, target: int) -> None:
        self.target = target
        self.n = 0
        self.done = asyncio.Event()
        self.late: list[float] = []

    def hit(self, late: float | None = None) -> None:
        self.n += 1
        if late is not None:
            self.late.append(late)
        if self.n >= self.target:
            self.done.set()


COUNTER = Counter(0)


class Job(dna.Actor):
    type_name = "bench.timers.Job"
    kv = KV()
    timers = Timers()

    @dna.call
    def touch(self) -> None:
        self.kv.write("x", 1)

    @dna.call
    def arm(self, names: list[str], dues: list[float]) -> None:
        for name, at in zip(names, dues, strict=True):
            self.timers.set(name, at=at, payload=at)

    def on_timer(self, name: str, payload: Any) -> None:
        COUNTER.hit(time.time() - payload)


def open_store(kind: str, path: str) -> Any:
    if kind == "sqlite":
        return dna.SQLiteStore(path, synchronous="normal")
    hosts = os.environ.get("DNA_CQL_HOSTS", "127.0.0.1:9042").split(",")
    return dna.ScyllaStore(hosts=hosts, keyspace=os.environ.get("DNA_CQL_KEYSPACE", "dna_test"))


def sqlite_bytes(path: str) -> int:
    """Bytes of pages in use in the database (after a checkpoint of the WAL)."""
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)
    finally:
        con.close()


async def arm_all(node: dna.Node, prefix: str, plan: dict[str, list[float]]) -> None:
    """Arm every actor's timers, 200 calls in flight at a time."""
    keys = list(plan)
    for i in range(0, len(keys), 200):
        await asyncio.gather(*(
            node.ref(Job, f"{prefix}{k}").arm([f"t{j:04d}" for j in range(len(plan[k]))], plan[k])
            for k in keys[i:i + 200]))


async def fire_rate(kind: str, path: str, actors: int, per: int,
                    gc_threshold: int | None = DEFAULT_THRESHOLD) -> float:
    global COUNTER
    total = actors * per
    prefix = f"r{os.getpid()}-{int(time.time())}-"
    async with dna.Node(store=open_store(kind, path), timer_poll=1e9, max_batch=1000) as node:
        keys = [str(i) for i in range(actors)]
        for i in range(0, actors, 500):
            await asyncio.gather(*(node.ref(Job, prefix + k).touch() for k in keys[i:i + 500]))
        before = sqlite_bytes(path) if kind == "sqlite" else None
        now = time.time()
        t0 = time.perf_counter()
        await arm_all(node, prefix, {k: [now] * per for k in keys})
        armed = time.perf_counter() - t0
        after = sqlite_bytes(path) if kind == "sqlite" else None
    print(f"armed {total:,} timers on {actors:,} actors in {armed:.2f} s "
          f"({total / armed:,.0f} timers/s set)")
    if before is not None and after is not None:
        print(f"storage: {(after - before) / total:.1f} bytes per pending timer "
              f"(SQLite pages in use, {before:,} -> {after:,} bytes)")
    COUNTER = Counter(total)
    t0, c0 = time.perf_counter(), time.process_time()
    async with dna.Node(store=open_store(kind, path), max_batch=1000,
                        gc_threshold=gc_threshold) as node:
        await COUNTER.done.wait()
        took, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"fire rate: {total:,} due timers over {actors:,} actors fired in {took:.2f} s "
              f"= {total / took:,.0f} timers/s (peak {node.timers.peak_inflight} in flight; "
              f"{cpu:.2f} s CPU of this process, {total / cpu:,.0f} timers per CPU second; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
              f"gc_threshold={gc_threshold})")
    return total / took


async def lateness(kind: str, path: str, rate: int, seconds: float, poll: float) -> None:
    global COUNTER
    total = int(rate * seconds)
    actors = max(1, rate // 10)
    prefix = f"l{os.getpid()}-{int(poll * 1000)}-{int(time.time())}-"
    COUNTER = Counter(total)
    async with dna.Node(store=open_store(kind, path), timer_poll=poll) as node:
        start = time.time() + 3.0  # arming takes under this
        plan: dict[str, list[float]] = {str(a): [] for a in range(actors)}
        for i in range(total):
            plan[str(i % actors)].append(start + i / rate)
        await arm_all(node, prefix, plan)
        await COUNTER.done.wait()
    late = sorted(COUNTER.late)
    q = statistics.quantiles(late, n=100)
    print(f"lateness at {rate:,} timers/s for {seconds:g} s, timer_poll={poll} s: "
          f"p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, max {late[-1] * 1000:.1f} ms, "
          f"min {late[0] * 1000:.2f} ms")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", choices=["sqlite", "cql"], default="sqlite")
    ap.add_argument("--actors", type=int, default=10_000)
    ap.add_argument("--per", type=int, default=10)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--gc", choices=["node", "cpython", "both"], default="node",
                    help="fire phase under the node's collector threshold (its default), "
                    "CPython's own (gc_threshold=None), or both alternated --rounds times")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"store {args.store}, Python {sys.version.split()[0]}, {os.cpu_count()} cores")
        gcs = {"node": DEFAULT_THRESHOLD, "cpython": None}
        if args.gc != "both":
            gcs = {args.gc: gcs[args.gc]}
        rates: dict[str, list[float]] = {g: [] for g in gcs}
        for r in range(args.rounds):
            for g, threshold in gcs.items():
                rates[g].append(await fire_rate(args.store, os.path.join(tmp, f"f{r}{g}.db"),
                                                args.actors, args.per, threshold))
        med = {g: statistics.median(v) for g, v in rates.items()}
        if len(gcs) == 2:
            print("fire rate, median over rounds: " + ", ".join(
                f"gc={g} {m:,.0f} timers/s" for g, m in med.items())
                + f"; node/cpython {med['node'] / med['cpython']:.2f}")
        for poll in (0.1, 0.02):
            await lateness(args.store, os.path.join(tmp, f"late{poll}.db"), args.rate,
                           args.seconds, poll)


if __name__ == "__main__":
    asyncio.run(main())

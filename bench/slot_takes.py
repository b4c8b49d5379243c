"""A fresh node taking every slot at once, on the CQL slot path: the wall time, the
process's CPU time, and the requests it sent, by statement (heartbeats and node
listings left out). One claim per slot, all at once, in a fresh keyspace each round.

    python bench/slot_takes.py [--hosts 127.0.0.1:9042] [--keyspace dna_takes] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time
from typing import Any

from dna.store import ActorId
from dna.store.cql import ScyllaStore
from dna.store.cql._slots import slot_of


class Counting:
    """Wraps a store's bridge: counts what is sent, by statement name."""

    def __init__(self, inner: Any, names: dict[int, str]) -> None:
        self.inner = inner
        self.names = names
        self.sent: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def run(self, query: Any, *args: Any, **kw: Any) -> Any:
        self.sent[self.names.get(id(query), type(query).__name__)] += 1
        return self.inner.run(query, *args, **kw)


async def one_round(hosts: str, keyspace: str, node: str) -> str:
    s = ScyllaStore(hosts.split(","), keyspace, activation="slots")
    await s.open(node)
    try:
        assert s._slots is not None and s._st is not None
        count = s._slots.count
        actors: dict[int, ActorId] = {}
        i = 0
        while len(actors) < count:
            a = ActorId("ns", "T", f"k{i}")
            actors.setdefault(slot_of(a, count), a)
            i += 1
        inner = s._bridge
        rec = s._bridge = Counting(inner, {id(v): k for k, v in vars(s._st).items()})  # type: ignore[assignment]
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(s.claim(a) for a in actors.values()))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        s._bridge = inner
        sent = ", ".join(f"{k} {v}" for k, v in sorted(rec.sent.items())
                         if not k.startswith("node_"))
        return f"{count} slots in {wall:.2f} s, process CPU {cpu:.2f} s; {sent}"
    finally:
        await s.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", default="127.0.0.1:9042")
    ap.add_argument("--keyspace", default="dna_takes")
    ap.add_argument("--rounds", type=int, default=3)
    ns = ap.parse_args()
    for r in range(ns.rounds):
        ks = f"{ns.keyspace}_{time.time_ns() % 10**8}"[:48]
        print(f"round {r}: {await one_round(ns.hosts, ks, f'takes-{r}')}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())

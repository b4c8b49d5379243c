"""End-to-end messages/s through a 3-stage pipeline on one node: exactly-once sends
(``self.send``) against plain casts of the same messages, in the same run.

    PYTHONPATH=src python bench/pipeline.py [--store URL] [--messages N] [--partitions P]

Stage 1 is one ``Source`` that the client feeds in calls of ``--chunk`` messages
(8 calls in flight); it sends each message on to one of ``P`` ``Part`` actors
(by message number), which count it (a KV write) and send it to the one
``Sink``, which counts it too (a KV write). A run ends when the sink's count,
read through a gated call (so durable), is N. Exactly-once: every hop is a
``self.send`` (an outbox row with the sender's commit, delivery, the receiver's
high-water mark, the row's deletion). Casts: every hop is ``await ref.h(x)``
(nothing durable about the message itself; a crash loses what is in flight).
Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import dna
from dna.storage import KV, Outbox
from dna.store import open_store

DONE: dict[str, asyncio.Future[None]] = {}  # namespace -> resolved when the sink saw all


class Source(dna.Actor):
    type_name = "bench.pipeline.Source"
    outbox = Outbox()

    @dna.call
    async def feed(self, first: int, n: int, parts: int, exactly_once: bool) -> int:
        for i in range(first, first + n):
            target = self.node.ref(Part, f"p{i % parts}", self.namespace).take
            if exactly_once:
                self.send(target, i)
            else:
                await target(i, False)
        return n


class Part(dna.Actor):
    type_name = "bench.pipeline.Part"
    outbox = Outbox()
    kv = KV()

    async def on_activate(self) -> None:
        self.n = await self.kv.read("n") or 0
        self.sink = self.node.ref(Sink, "sink", self.namespace).take

    @dna.cast
    async def take(self, i: int, exactly_once: bool = True) -> None:
        self.n += 1
        self.kv.write("n", self.n)
        if exactly_once:
            self.send(self.sink, i)
        else:
            await self.sink(i, False)


class Sink(dna.Actor):
    type_name = "bench.pipeline.Sink"
    kv = KV()

    async def on_activate(self) -> None:
        self.n = await self.kv.read("n") or 0
        self.want = 0

    @dna.call
    def expect(self, n: int) -> None:
        self.want = n

    @dna.cast
    def take(self, i: int, exactly_once: bool = True) -> None:
        self.n += 1
        self.kv.write("n", self.n)
        if self.n == self.want:
            fut = DONE.get(self.namespace)
            if fut is not None and not fut.done():
                fut.set_result(None)

    @dna.call
    def count(self) -> int:
        return int(self.n)


async def run(node: dna.Node, n: int, parts: int, chunk: int, exactly_once: bool) -> float:
    ns = f"pipe-{uuid.uuid4().hex[:10]}"
    sink = node.ref(Sink, "sink", ns)
    await sink.expect(n)
    done = DONE[ns] = node.loop.create_future()
    source = node.ref(Source, "source", ns)
    slots = asyncio.Semaphore(8)

    async def feed(first: int) -> None:
        async with slots:
            await source.feed(first, min(chunk, n - first), parts, exactly_once)

    t0 = time.perf_counter()
    await asyncio.gather(*(feed(i) for i in range(0, n, chunk)))
    await done
    del DONE[ns]
    assert await sink.count() == n  # gated: durable
    return n / (time.perf_counter() - t0)


async def main(url: str, n: int, parts: int, chunk: int, rounds: int) -> None:
    async with dna.Node(store=open_store(url)) as node:
        await run(node, min(n, 2000), parts, chunk, True)  # warm up both paths
        await run(node, min(n, 2000), parts, chunk, False)
        pairs = []  # (casts, exactly-once) of one round, run back to back
        for _ in range(rounds):
            casts = await run(node, n, parts, chunk, False)
            pairs.append((casts, await run(node, n, parts, chunk, True)))
    casts, eo = max(c for c, _ in pairs), max(e for _, e in pairs)
    per_round = sorted(e / c for c, e in pairs)
    print(f"store {url.split('?')[0]}: {n} messages through source -> {parts} partitions -> "
          f"sink, best of {rounds}")
    print(f"  plain casts:       {casts:10,.0f} messages/s")
    print(f"  exactly-once sends:{eo:10,.0f} messages/s")
    print(f"  ratio:             {eo / casts:10.2f} (best to best; per round: "
          f"{', '.join(f'{r:.2f}' for r in per_round)})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", help="store URL (default: a fresh SQLite file)")
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = ns.store or f"sqlite://{Path(tmp) / 'pipeline.db'}"
        asyncio.run(main(url, ns.messages, ns.partitions, ns.chunk, ns.rounds))


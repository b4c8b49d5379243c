"""``python -m examples.pipeline [--store URL] [--lines N]``: run the pipeline in one
process and check the totals are exact."""

from __future__ import annotations

import argparse
import asyncio

import dna
from dna.store import open_store

from .actors import PARTITIONS, Counter, Source, Totals
from .text import expected, lines


async def main(url: str, n: int, ns: str) -> None:
    text = lines(n)
    async with dna.Node(store=open_store(url)) as node:
        source = node.ref(Source, "input", ns)
        for batch, i in enumerate(range(0, n, 100)):
            await source.feed(batch, text[i:i + 100])
        while await source.pump():
            pass
        await source.flushed()
        for p in range(PARTITIONS):
            await node.ref(Counter, f"p{p}", ns).flushed()
        totals = await node.ref(Totals, "all", ns).totals()
    print(f"{n} lines, {sum(totals.values())} words counted, exact: {totals == expected(text)}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", default="sqlite://pipeline.db")
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--namespace", default="pipeline")
    args = ap.parse_args()
    asyncio.run(main(args.store, args.lines, args.namespace))

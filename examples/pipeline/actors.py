"""The pipeline's actors (``dna node --app examples.pipeline.actors``).

``Source.feed(batch, lines)`` appends the lines to the source's input ``Log``
(a batch number the source has already taken is ignored, so a client may retry
a feed whose answer it lost) and processes up to ``PUMP_LINES`` unprocessed
lines; ``Source.pump()`` processes more and returns how many are left. A
processed line's words go to the counters in the same commit that advances the
source's cursor and truncates its log. A pipeline lives in one namespace: each
stage names the next in its own.
"""

from __future__ import annotations

import zlib
from collections import Counter as Tally
from typing import Any

import dna
from dna.storage import KV, Log, Outbox

__all__ = ["PARTITIONS", "PUMP_LINES", "Counter", "Source", "Totals", "partition_of"]

PARTITIONS = 4  # counter actors "p0".."p3"
PUMP_LINES = 200  # lines one feed or pump processes at most


def partition_of(word: str) -> str:
    """The key of the counter that counts ``word``."""
    return f"p{zlib.crc32(word.encode()) % PARTITIONS}"


async def load_counts(kv: Any) -> dict[str, int]:
    """Every ``word -> count`` row of ``kv``."""
    counts: dict[str, int] = {}
    after: str | None = None
    while True:
        rows = await kv.list(limit=1000, start_after=after)
        counts.update(rows)
        if len(rows) < 1000:
            return counts
        after = rows[-1][0]


class Source(dna.Actor):
    """Holds the input in its log; sends each line's words to their counters."""

    type_name = "pipeline.Source"
    input = Log()
    outbox = Outbox()
    kv = KV()

    async def on_activate(self) -> None:
        fed = await self.kv.read("fed")
        self.fed: int = -1 if fed is None else fed  # last batch number taken
        self.cursor: int = await self.kv.read("cursor") or 0  # first unprocessed offset

    @dna.call
    async def feed(self, batch: int, lines: list[str]) -> int:
        if batch > self.fed:
            for line in lines:
                self.input.append(line)
            self.fed = batch
            self.kv.write("fed", batch)
        return await self.pump_lines()

    @dna.call
    async def pump(self) -> int:
        return await self.pump_lines()

    async def pump_lines(self) -> int:
        """Process up to ``PUMP_LINES`` lines; how many are left."""
        rows = await self.input.read(self.cursor, PUMP_LINES)
        words: dict[str, list[str]] = {}
        for _, line in rows:
            for word in line.split():
                words.setdefault(partition_of(word), []).append(word)
        for key, ws in sorted(words.items()):
            self.send(self.node.ref(Counter, key, self.namespace).count, ws)
        if rows:
            self.cursor = rows[-1][0] + 1
            self.kv.write("cursor", self.cursor)
            self.input.truncate(self.cursor)
        return self.input.end - self.cursor

    @dna.call
    async def flushed(self) -> int:
        """Once every send of the source is committed by its counter: lines left."""
        await self.outbox.flushed()
        return self.input.end - self.cursor


class Counter(dna.Actor):
    """One partition: counts its words, sends each batch's counts to the totals."""

    type_name = "pipeline.Counter"
    kv = KV()
    outbox = Outbox()

    async def on_activate(self) -> None:
        self.counts = await load_counts(self.kv)

    @dna.cast
    def count(self, words: list[str]) -> None:
        delta = Tally(words)
        for word, n in delta.items():
            total = self.counts[word] = self.counts.get(word, 0) + n
            self.kv.write(word, total)
        self.send(self.node.ref(Totals, "all", self.namespace).add, dict(delta))

    @dna.call
    async def flushed(self) -> dict[str, int]:
        """Once every send of this counter is committed by the totals: its counts."""
        await self.outbox.flushed()
        return self.counts


class Totals(dna.Actor):
    """The aggregate of every counter."""

    type_name = "pipeline.Totals"
    kv = KV()

    async def on_activate(self) -> None:
        self.counts = await load_counts(self.kv)

    @dna.cast
    def add(self, delta: dict[str, int]) -> None:
        for word, n in delta.items():
            total = self.counts[word] = self.counts.get(word, 0) + n
            self.kv.write(word, total)

    @dna.call
    def totals(self) -> dict[str, int]:
        return self.counts

"""asv benchmark of durable timers on SQLite: a fresh node fires 20,000 due timers
over 2,000 actors (the fire phase of ``bench/timers.py``, smaller)."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from typing import Any

import dna
from dna.storage import Timers


class _Hits:
    def __init__(self, target: int) -> None:
        self.target, self.n, self.done = target, 0, asyncio.Event()

    def hit(self) -> None:
        self.n += 1
        if self.n >= self.target:
            self.done.set()


HITS = _Hits(0)


class AsvTimer(dna.Actor):
    type_name = "asv.timers.Job"
    timers = Timers()

    @dna.call
    def arm(self, n: int, at: float) -> None:
        for i in range(n):
            self.timers.set(f"t{i:03d}", at=at)

    def on_timer(self, name: str, payload: Any) -> None:
        HITS.hit()


class TimerFire:
    actors, per = 2_000, 10
    timeout = 120
    # each sample fires what its own setup armed: one call per setup, no warm-up calls
    number, repeat, warmup_time = 1, 3, 0.0

    def setup(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.path = os.path.join(self.dir, "t.db")

        async def arm() -> None:
            async with dna.Node(store=dna.SQLiteStore(self.path, synchronous="normal"),
                                timer_poll=1e9) as node:
                now = time.time()
                await asyncio.gather(*(node.ref(AsvTimer, str(k)).arm(self.per, now)
                                       for k in range(self.actors)))

        asyncio.run(arm())

    def time_fire(self) -> None:
        async def fire() -> None:
            global HITS
            HITS = _Hits(self.actors * self.per)
            async with dna.Node(store=dna.SQLiteStore(self.path, synchronous="normal"),
                                max_batch=1000):
                await HITS.done.wait()

        asyncio.run(fire())

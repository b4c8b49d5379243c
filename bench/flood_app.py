"""Actors for ``bench/flood.py``: a slow one, a big value, a pinger."""

from __future__ import annotations

import asyncio

import dna


class Slow(dna.Actor):
    type_name = "flood_app.Slow"

    def __init__(self) -> None:
        self.n = 0

    @dna.cast
    async def work(self, pad: bytes) -> None:
        self.n += 1
        if self.n % 100 == 0:
            await asyncio.sleep(0.02)  # 0.2 ms a message on average: the mailbox fills

    @dna.call
    def count(self) -> int:
        return self.n


class Blob(dna.Actor):
    type_name = "flood_app.Blob"

    @dna.call
    def get(self) -> bytes:
        return b"x" * (1 << 20)


class Pinger(dna.Actor):
    type_name = "flood_app.Pinger"

    @dna.call
    def ping(self) -> str:
        return "pong"

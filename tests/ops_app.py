"""Actors for the tests of ``dna node`` as an operator runs it (``--app ops_app``)."""

from __future__ import annotations

import asyncio

import dna
from dna.storage import KV


class OpsProbe(dna.Actor):
    type_name = "ops_app.OpsProbe"
    kv = KV()

    @dna.call
    def put(self, key: str, value: int) -> str:
        self.kv.write(key, value)
        return "ok"

    @dna.cast
    def tick(self) -> None:
        pass

    @dna.call
    def boom(self, text: str) -> None:
        raise ValueError(text)


class SlowToLeave(dna.Actor):
    """Passivation takes ``seconds`` (given by ``hold``): a drain that can be watched."""

    type_name = "ops_app.SlowToLeave"

    @dna.call
    def hold(self, seconds: float) -> str:
        self.seconds = seconds
        return "held"

    async def on_passivate(self) -> None:
        await asyncio.sleep(getattr(self, "seconds", 0.0))

"""The seed's KV test actor, shipped so docs, tests and benchmarks need no code."""

from __future__ import annotations

from typing import Any

from .actor import Actor, call, cast
from .storage import KV

__all__ = ["KVActor", "Noop"]


class KVActor(Actor):
    """``put`` (gated call), ``put_cast`` (cast) and ``get`` over one ``KV``."""

    type_name = "dna.examples.KVActor"
    kv = KV()

    @call
    def put(self, key: str, value: Any) -> str:
        self.kv.write(key, value)
        return "ok"

    @cast
    def put_cast(self, key: str, value: Any) -> None:
        self.kv.write(key, value)

    @call
    async def get(self, key: str) -> Any:
        return await self.kv.read(key)

    @call
    def delete(self, key: str) -> str:
        self.kv.delete(key)
        return "ok"

    @call
    async def list(self, prefix: str = "", limit: int = 100) -> list[list[Any]]:
        return [[k, v] for k, v in await self.kv.list(prefix, limit)]


class Noop(Actor):
    """No state: measures the messaging runtime alone."""

    type_name = "dna.examples.Noop"

    @cast
    def tick(self) -> None:
        pass

    @call
    def ping(self) -> None:
        return None

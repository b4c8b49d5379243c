"""A user app with a typo and a wrong argument under mypy --strict (tests/test_typing.py)."""

from __future__ import annotations

import dna
from dna.storage import KV


class Room(dna.Actor):
    kv = KV()

    @dna.call
    async def put(self, key: str, value: bytes) -> str:
        self.kv.write(key, value)
        return "ok"

    @dna.call
    async def get(self, key: str) -> bytes | None:
        got: bytes | None = await self.kv.read(key)
        return got

    @dna.call
    def size(self) -> int:
        return 1

    @dna.cast
    def put_cast(self, key: str, value: bytes) -> None:
        self.kv.write(key, value)


async def main(node: dna.Node) -> int:
    room = node.ref(Room, "lobby")
    ok: str = await room.putt("a", b"1")
    await room.put_cast("b", 2)
    room.put_cast.nowait("c", b"3")
    value: bytes | None = await room.get.with_timeout(2.0)("b")
    assert ok == "ok" and value is not None
    return await room.size()

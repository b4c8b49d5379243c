"""``dna.storage.Log`` on every store (memory, a real SQLite file, a real Cassandra):
append/read/truncate, pending appends visible, atomic with KV writes, discarded
with a handler that raises (offsets stay dense), and kept across restarts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.conftest import opened

import dna
from dna.storage import KV, Log


class Journal(dna.Actor):
    type_name = "tests.Journal"
    log = Log()
    kv = KV()

    @dna.call
    async def add(self, values: list[Any], fail: bool = False) -> list[int]:
        offsets = [self.log.append(v) for v in values]
        self.kv.write("last", values[-1] if values else None)
        if fail:
            raise RuntimeError("after appending")
        return offsets

    @dna.cast
    def add_cast(self, value: Any, fail: bool = False) -> None:
        self.log.append(value)
        if fail:
            raise RuntimeError("after appending")

    @dna.call
    async def add_and_read(self, value: Any) -> list[Any]:
        self.log.append(value)
        return [[o, v] for o, v in await self.log.read(0, 1000)]

    @dna.call
    async def read(self, start: int = 0, limit: int = 1000) -> list[Any]:
        return [[o, v] for o, v in await self.log.read(start, limit)]

    @dna.call
    def bounds(self) -> list[int]:
        return [self.log.start, self.log.end]

    @dna.call
    def truncate(self, before: int) -> list[int]:
        self.log.truncate(before)
        return [self.log.start, self.log.end]

    @dna.call
    async def last(self) -> Any:
        return await self.kv.read("last")


Factory = Callable[[], Any]


async def test_append_read_truncate(store_factory: Factory, unique: str) -> None:
    async with dna.Node(store=store_factory()) as node:
        j = node.ref(Journal, unique)
        assert await j.add(["a", "b", "c"]) == [0, 1, 2]
        assert await j.add([{"k": [1, 2]}, b"\x00"]) == [3, 4]
        assert await j.read() == [[0, "a"], [1, "b"], [2, "c"], [3, {"k": [1, 2]}],
                                  [4, b"\x00"]]
        assert await j.read(2, 2) == [[2, "c"], [3, {"k": [1, 2]}]]
        assert await j.read(5) == []
        assert await j.truncate(2) == [2, 5]
        assert await j.read(0, 10) == [[2, "c"], [3, {"k": [1, 2]}], [4, b"\x00"]]
        assert await j.truncate(1) == [2, 5]  # never moves back
        assert await j.truncate(99) == [5, 5]  # at most up to the end
        assert await j.read() == []
        assert await j.add(["d"]) == [5]
        assert await j.read() == [[5, "d"]]


async def test_pending_appends_are_visible_to_reads(store_factory: Factory, unique: str) -> None:
    async with dna.Node(store=store_factory()) as node:
        j = node.ref(Journal, unique)
        await j.add(["x"])
        assert await j.add_and_read("y") == [[0, "x"], [1, "y"]]


async def test_a_handler_that_raises_takes_its_appends_and_kv_writes_with_it(
    store_factory: Factory, unique: str
) -> None:
    async with dna.Node(store=store_factory()) as node:
        j = node.ref(Journal, unique)
        assert await j.add(["a"]) == [0]
        with pytest.raises(dna.ActorError, match="after appending"):
            await j.add(["lost-1", "lost-2"], fail=True)
        assert await j.last() == "a"  # the KV write went with the appends
        assert await j.bounds() == [0, 1]
        # casts in one batch: the failing one's append goes, offsets stay dense
        await j.add_cast("b")
        await j.add_cast("lost", fail=True)
        await j.add_cast("c")
        assert await j.read() == [[0, "a"], [1, "b"], [2, "c"]]


async def test_appends_commit_with_kv_writes_and_survive_restart(
    store_factory: Factory, unique: str
) -> None:
    async with dna.Node(store=store_factory()) as node:
        j = node.ref(Journal, unique)
        assert await j.add(["a", "b", "c"]) == [0, 1, 2]
        await j.truncate(1)
    async with dna.Node(store=store_factory()) as node:
        j = node.ref(Journal, unique)
        assert await j.last() == "c"
        assert await j.bounds() == [1, 3]
        assert await j.add(["d"]) == [3]  # dense across re-activation
        assert await j.read() == [[1, "b"], [2, "c"], [3, "d"]]


async def test_truncated_rows_are_deleted(store_factory: Factory, unique: str) -> None:
    async with dna.Node(store=store_factory()) as node:
        j = node.ref(Journal, unique)
        await j.add(list(range(10)))
        await j.truncate(7)
    async with opened(store_factory()) as store:
        claim = await store.claim(dna.ActorId("default", Journal.type_name, unique))
        rows = await store.list(claim, "log", "e", 100)
    assert [int(k[1:], 16) for k, _ in rows] == [7, 8, 9]


def test_log_outside_an_activation_is_an_error() -> None:
    with pytest.raises(dna.InterfaceError, match="only inside an activation"):
        Journal().log  # noqa: B018

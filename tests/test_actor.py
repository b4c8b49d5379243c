"""Message semantics of DESIGN.md on one node, over every store (real SQLite file,
memory, and Cassandra when DNA_CQL_HOSTS is set)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from tests.conftest import make_store

import dna
from dna.errors import ActorError, Overloaded, Timeout, UnknownHandler
from dna.examples import KVActor
from dna.storage import KV


class Counter(dna.Actor):
    kv = KV()
    activations = 0

    async def on_activate(self) -> None:
        type(self).activations += 1
        self.seen: list[Any] = []
        self.total = await self.kv.read("total") or 0

    @dna.cast
    def add(self, x: int) -> None:
        self.seen.append(x)
        self.total += x
        self.kv.write("total", self.total)

    @dna.call
    def get_seen(self) -> list[Any]:
        return self.seen

    @dna.call
    def total_now(self) -> int:
        return int(self.total)

    @dna.call
    def boom(self, msg: str) -> None:
        self.kv.write("boom", "should vanish")
        raise ValueError(msg)

    @dna.call
    def bad_result(self) -> Any:
        self.kv.write("bad", 1)
        return object()

    @dna.call
    async def slow(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "slept"

    @dna.call
    async def no_suspend(self) -> bool:
        return asyncio.current_task() is None

    @dna.call
    def echo(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [list(args), kwargs]


@pytest.fixture
def node_on(store_kind: str, tmp_path: Any) -> Any:
    return lambda **kw: dna.Node(store=make_store(store_kind, tmp_path), **kw)


async def test_put_get_and_cast_in_order(node_on: Any, unique: str) -> None:
    async with node_on() as node:
        room = node.ref(KVActor, unique)
        assert await room.put("a", b"1") == "ok"
        await room.put_cast("b", b"2")
        assert await room.get("b") == b"2"
        assert await room.get("missing") is None
        c = node.ref(Counter, unique)
        for i in range(2000):
            await c.add(i)
        assert await c.get_seen() == list(range(2000))


async def test_values_survive_node_restart(store_kind: str, tmp_path: Any, unique: str) -> None:
    if store_kind == "memory":
        pytest.skip("MemoryStore is not durable by design")
    async with dna.Node(store=make_store(store_kind, tmp_path)) as node:
        ref = node.ref(KVActor, unique)
        for i in range(100):
            await ref.put_cast(str(i), {"i": i, "b": b"x"})
        await ref.put("last", [1, 2, 3])
    async with dna.Node(store=make_store(store_kind, tmp_path)) as node:
        ref = node.ref(KVActor, unique)
        assert await ref.get("99") == {"i": 99, "b": b"x"}
        assert await ref.get("last") == [1, 2, 3]


async def test_batches_grow_with_load(node_on: Any, unique: str) -> None:
    async with node_on() as node:
        ref = node.ref(KVActor, unique)
        await ref.get("warm")
        for i in range(20_000):
            await ref.put_cast(str(i), b"v")
        await ref.put("end", b"v")
        assert node.stats.max_batch > 100
        assert node.stats.commits < 20_000 / 10


async def test_handler_error_discards_only_its_writes(node_on: Any, unique: str) -> None:
    async with node_on() as node:
        c = node.ref(Counter, unique)
        await c.add(5)
        with pytest.raises(ActorError) as info:
            await c.boom("bad thing")
        assert info.value.remote_type == "ValueError"
        assert info.value.remote_message == "bad thing"
        await c.add(1)
        kv = node.ref(KVActor, unique)  # other actor: unaffected
        await kv.put("x", 1)
        assert await c.total_now() == 6
    async with node_on() as node:
        c = node.ref(Counter, unique)
        assert await c.total_now() == 6  # rebuilt from storage: boom's write never landed


async def test_unserialisable_result_is_an_actor_error(node_on: Any, unique: str) -> None:
    async with node_on() as node:
        c = node.ref(Counter, unique)
        with pytest.raises(ActorError) as info:
            await c.bad_result()
        assert info.value.remote_type == "TypeError"


async def test_unserialisable_argument_refused_at_caller(node_on: Any, unique: str) -> None:
    async with node_on() as node:
        c = node.ref(Counter, unique)
        with pytest.raises(TypeError, match="set"):
            await c.add({1, 2})
        with pytest.raises(TypeError):
            c.add.nowait(object())
        with pytest.raises(TypeError):
            await c.echo(x=object())
        assert await c.get_seen() == []  # nothing was enqueued
        assert await c.echo((1, 2), k={"a": (3,)}) == [[[1, 2]], {"k": {"a": [3]}}]


async def test_unknown_handler_and_actor_type(node_on: Any, unique: str) -> None:
    async with node_on() as node:
        c = node.ref(Counter, unique)
        with pytest.raises(UnknownHandler):
            c.nope()
        with pytest.raises(AttributeError):  # UnknownHandler is an AttributeError too
            _ = c.missing
        with pytest.raises(dna.InterfaceError, match="unknown actor type"):
            node.ref("NoSuchType", unique)
        with pytest.raises(dna.InterfaceError):
            node.ref(int, unique)  # type: ignore[arg-type]


async def test_deadline(node_on: Any, unique: str) -> None:
    async with node_on(call_timeout=0.2) as node:
        c = node.ref(Counter, unique)
        with pytest.raises(Timeout):
            await c.slow(1.0)
        assert await c.slow.with_timeout(5)(0.3) == "slept"
        with pytest.raises(Timeout):
            await c.slow.with_timeout(0.05)(0.5)


async def test_async_handler_without_suspension_runs_without_a_task(
    node_on: Any, unique: str
) -> None:
    async with node_on() as node:
        c = node.ref(Counter, unique)
        assert await c.no_suspend() is True


async def test_turn_based_even_when_handlers_suspend(node_on: Any, unique: str) -> None:
    class Turn(dna.Actor):
        def __init__(self) -> None:
            self.inside = 0
            self.max_inside = 0

        @dna.call
        async def work(self) -> int:
            self.inside += 1
            self.max_inside = max(self.max_inside, self.inside)
            await asyncio.sleep(0.001)
            self.inside -= 1
            return self.max_inside

    async with node_on() as node:
        ref = node.ref(Turn, unique)
        results = await asyncio.gather(*(ref.work() for _ in range(50)))
        assert max(results) == 1


async def test_mailbox_overflow(node_on: Any, unique: str) -> None:
    async with node_on(mailbox_size=8) as node:
        c = node.ref(Counter, unique)
        await c.total_now()  # activated and idle
        for i in range(8):
            c.add.nowait(i)
        with pytest.raises(Overloaded):
            c.add.nowait(99)
        for i in range(8, 100):  # awaiting waits for room and keeps the order
            await c.add(i)
        assert await c.get_seen() == list(range(100))


async def test_passivation_and_reactivation_from_storage(node_on: Any, unique: str) -> None:
    class Sleepy(dna.Actor):
        kv = KV()
        passivated = 0

        async def on_passivate(self) -> None:
            type(self).passivated += 1

        @dna.call
        def put(self, v: int) -> None:
            self.kv.write("v", v)

        @dna.call
        async def get(self) -> Any:
            return await self.kv.read("v")

    async with node_on(passivate_after=0.05) as node:
        ref = node.ref(Sleepy, unique)
        await ref.put(7)
        assert node.activations == 1
        for _ in range(100):
            await asyncio.sleep(0.02)
            if node.activations == 0:
                break
        assert node.activations == 0
        assert Sleepy.passivated == 1
        assert await ref.get() == 7


async def test_type_name_pinning_keeps_data(node_on: Any, unique: str) -> None:
    def old_class() -> type[dna.Actor]:
        class OldName(dna.Actor):
            type_name = f"pinned-{unique}"
            kv = KV()

            @dna.call
            def put(self, v: str) -> None:
                self.kv.write("k", v)

        return OldName

    async with node_on() as node:
        if node.store.kind == "memory":
            pytest.skip("a MemoryStore's data does not outlive its last client")
        await node.ref(old_class(), "x").put("kept")
    del node
    gc.collect()  # the old class is gone, as after a rename: its type_name is free

    class NewName(dna.Actor):
        type_name = f"pinned-{unique}"
        kv = KV()

        @dna.call
        async def get(self) -> Any:
            return await self.kv.read("k")

    async with node_on() as node:
        assert await node.ref(NewName, "x").get() == "kept"


async def test_kv_list_merges_pending_writes(node_on: Any, unique: str) -> None:
    class Lister(dna.Actor):
        kv = KV()

        @dna.call
        async def fill(self) -> None:
            for i in range(10):
                self.kv.write(f"p/{i}", i)
            self.kv.write("q/0", 0)

        @dna.call
        async def change_and_list(self) -> Any:
            self.kv.delete("p/3")
            self.kv.write("p/31", 31)
            return await self.kv.list("p/", limit=5)

        @dna.call
        async def list_after(self, after: str) -> Any:
            return await self.kv.list("p/", limit=3, start_after=after)

    async with node_on() as node:
        ref = node.ref(Lister, unique)
        await ref.fill()
        got = await ref.change_and_list()
        assert [k for k, _ in got] == ["p/0", "p/1", "p/2", "p/31", "p/4"]
        got = await ref.list_after("p/4")
        assert [k for k, _ in got] == ["p/5", "p/6", "p/7"]


async def test_node_misuse(store_kind: str, tmp_path: Any) -> None:
    node = dna.Node(store=make_store(store_kind, tmp_path))
    with pytest.raises(dna.InterfaceError):
        node.ref(KVActor, "x").put_cast.nowait("a", 1)
    with pytest.raises(ValueError):
        dna.Node(store=make_store(store_kind, tmp_path), mailbox_size=0)

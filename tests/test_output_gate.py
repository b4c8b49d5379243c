"""Output gate and commit failure, with a store whose commits the test controls.

The store is a real MemoryStore wrapped to hold or fail commits on demand: a
unit test of the runtime layer (the stores have their own contract suite).
"""

from __future__ import annotations

import asyncio

import dna
from dna.errors import CommitFailed, StoreUnavailable
from dna.storage import KV
from dna.store import Claim, Row
from dna.store.memory import MemoryStore


class GateStore(MemoryStore):
    """Commits wait for ``release`` and fail while ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = asyncio.Event()
        self.hold.set()
        self.entered = asyncio.Event()  # a commit has started (and may be held)
        self.failing = False
        self.commits = 0

    async def commit(self, claim: Claim, rows: list[Row]) -> None:
        self.entered.set()
        await self.hold.wait()
        if self.failing:
            raise StoreUnavailable("injected: database down")
        self.commits += 1
        await super().commit(claim, rows)


class Acc(dna.Actor):
    kv = KV()
    activations = 0

    async def on_activate(self) -> None:
        type(self).activations += 1
        self.n = await self.kv.read("n") or 0

    @dna.call
    def incr(self) -> int:
        self.n += 1
        self.kv.write("n", self.n)
        return int(self.n)

    @dna.call
    def peek(self) -> int:
        return int(self.n)

    @dna.call(reply_async=True)
    def incr_async(self) -> int:
        self.n += 1
        self.kv.write("n", self.n)
        return int(self.n)


async def test_gated_reply_waits_for_commit() -> None:
    store = GateStore()
    async with dna.Node(store=store) as node:
        ref = node.ref(Acc, "a")
        assert await ref.peek() == 0  # nothing pending: replies at once
        store.hold.clear()
        store.entered.clear()
        put = asyncio.ensure_future(ref.incr())
        peek = asyncio.ensure_future(ref.peek())  # read-only, but after a pending write
        await store.entered.wait()  # the batch ran; its commit is held
        for _ in range(5):  # a reply released with the batch would wake its caller by now
            await asyncio.sleep(0)
        assert not put.done() and not peek.done()
        store.hold.set()
        assert await put == 1
        assert await peek == 1


async def test_reply_async_opts_out_of_the_gate() -> None:
    store = GateStore()
    async with dna.Node(store=store) as node:
        ref = node.ref(Acc, "b")
        await ref.peek()
        store.hold.clear()
        assert await asyncio.wait_for(ref.incr_async(), 1.0) == 1
        store.hold.set()


async def test_failed_commit_errors_callers_and_restarts_from_storage() -> None:
    store = GateStore()
    Acc.activations = 0
    async with dna.Node(store=store) as node:
        ref = node.ref(Acc, "c")
        assert await ref.incr() == 1
        store.failing = True
        results = await asyncio.gather(*(ref.incr() for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, CommitFailed) for r in results), results
        store.failing = False
        # restarted from storage: the lost increments are gone, the acknowledged one is not
        assert await ref.peek() == 1
        assert await ref.incr() == 2
        assert Acc.activations == 2
        assert node.activations == 1

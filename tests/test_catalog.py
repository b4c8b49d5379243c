"""The actor catalog (issue 10, section 3) on memory, a real SQLite file and Cassandra:
listing actors that exist in storage with owner, epoch and activity, paging,
filters, ``inspect``, and destroying an actor for good."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import dna
from dna.errors import CommitFailed, CommitUnknown, StaleEpoch, StoreUnavailable
from dna.ids import ActorId
from dna.storage import KV
from dna.store import Claim, Row
from dna.store.memory import MemoryStore


class CatRoom(dna.Actor):
    kv = KV()
    activations: dict[tuple[str, str], int] = {}  # (namespace, key) -> activations so far

    async def on_activate(self) -> None:
        name = (self.namespace, self.key)
        CatRoom.activations[name] = CatRoom.activations.get(name, 0) + 1

    @dna.call
    def put(self, key: str, value: Any) -> str:
        self.kv.write(key, value)
        return "ok"

    @dna.call
    async def get(self, key: str) -> Any:
        return await self.kv.read(key)

    @dna.call
    def wipe(self, also: str | None = None) -> str:
        if also is not None:
            self.kv.write(also, "gone with the actor")
        self.destroy()
        return "wiped"

    @dna.call
    def wipe_then_fail(self) -> None:
        self.destroy()
        raise RuntimeError("changed my mind")


class CatOther(dna.Actor):
    kv = KV()

    @dna.call
    def put(self, key: str, value: Any) -> str:
        self.kv.write(key, value)
        return "ok"


async def walk(node: dna.Node, limit: int, **filters: Any) -> list[dna.CatalogEntry]:
    """Every entry of a full walk, page after page."""
    out: list[dna.CatalogEntry] = []
    after = None
    while True:
        page = await node.catalog(after=after, limit=limit, **filters)
        assert len(page) <= limit
        out += page.entries
        if page.next is None:
            return out
        after = page.next


async def store_walk(store: Any, namespace: str) -> list[Any]:
    """Every catalog row of ``namespace``, straight from the store contract."""
    out: list[Any] = []
    after = None
    while True:
        rows, after = await store.catalog(None, namespace, after, 100)
        out += rows
        if after is None:
            return out


# ---------------------------------------------------------------- listing


async def test_catalog_lists_active_and_passivated_actors_with_owner_and_epoch(
    store_factory: Callable[[], Any], unique: str
) -> None:
    ns = f"cat-{unique}"
    keep = store_factory()  # a memory database lives while a client refers to it
    async with dna.Node(store=store_factory()) as first:
        for i in range(5):
            assert await first.ref(CatRoom, f"r{i}", ns).put("a", i) == "ok"
        page = await walk(first, 100, type=CatRoom, namespace=ns)
        assert sorted(e.key for e in page) == [f"r{i}" for i in range(5)]  # order: the store's
        assert all(e.active and e.owner == first.node_id and e.epoch == 1 for e in page)
    async with dna.Node(store=keep) as second:  # the first one passivated everything
        assert await second.ref(CatRoom, "r3", ns).get("a") == 3
        got = {e.key: e for e in await walk(second, 2, type=CatRoom, namespace=ns)}
        assert sorted(got) == [f"r{i}" for i in range(5)]
        assert (got["r3"].owner, got["r3"].epoch, got["r3"].active) == (second.node_id, 2, True)
        for key in ("r0", "r1", "r2", "r4"):
            assert (got[key].owner, got[key].epoch, got[key].active) == (None, 1, False)
        assert got["r3"].actor_id == ActorId(ns, "CatRoom", "r3")


async def test_type_filter_takes_the_class_or_its_name_and_namespaces_filter(
    store_factory: Callable[[], Any], unique: str
) -> None:
    ns, other_ns = f"cat-{unique}", f"cat2-{unique}"
    async with dna.Node(store=store_factory()) as node:
        for i in range(3):
            await node.ref(CatRoom, f"room{i}", ns).put("a", i)
            await node.ref(CatOther, f"other{i}", ns).put("a", i)
        await node.ref(CatRoom, "elsewhere", other_ns).put("a", 0)
        rooms = await walk(node, 100, type=CatRoom, namespace=ns)
        assert sorted(e.key for e in rooms) == ["room0", "room1", "room2"]
        by_name = await walk(node, 100, type="CatOther", namespace=ns)
        assert sorted(e.key for e in by_name) == ["other0", "other1", "other2"]
        both = await walk(node, 1, namespace=ns)
        assert sorted(e.key for e in both) == sorted(
            [f"room{i}" for i in range(3)] + [f"other{i}" for i in range(3)])
        assert [e.key for e in await walk(node, 100, type=CatRoom, namespace=other_ns)] == [
            "elsewhere"]
        assert await walk(node, 100, type="NoSuchType", namespace=ns) == []
        everything = await walk(node, 1000)  # no filter: ours are among them, once each
        mine = [e.key for e in everything if e.namespace in (ns, other_ns)]
        assert sorted(mine) == sorted([e.key for e in both] + ["elsewhere"])


async def test_bad_catalog_arguments_are_refused_clearly(
    store_factory: Callable[[], Any]
) -> None:
    async with dna.Node(store=store_factory()) as node:
        with pytest.raises(dna.InterfaceError, match=r"neither a dna\.Actor subclass"):
            await node.catalog(int)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="between 1 and"):
            await node.catalog(CatRoom, limit=0)
        with pytest.raises(ValueError, match="not a catalog cursor"):
            await node.catalog(CatRoom, after="garbage")
        with pytest.raises(TypeError, match="namespace"):
            await node.catalog(CatRoom, namespace=3)  # type: ignore[arg-type]


async def test_paging_2500_actors_by_100_lists_each_once_despite_concurrent_inserts(
    store_factory: Callable[[], Any], unique: str
) -> None:
    ns = f"page-{unique}"
    async with dna.Node(store=store_factory()) as node:
        store = node.store
        names = [ActorId(ns, "CatRoom", f"k{i:05d}") for i in range(2500)]
        claims: list[Claim] = []
        for i in range(0, len(names), 250):  # existing actors: claimed (pipelined)
            claims += await asyncio.gather(*(store.claim(a) for a in names[i:i + 250]))
        seen: list[str] = []
        added: set[str] = set()
        after, pages = None, 0
        while True:
            page = await node.catalog(CatRoom, namespace=ns, after=after, limit=100)
            seen += [e.key for e in page]
            pages += 1
            # new actors appear meanwhile, before and after the cursor
            fresh = [ActorId(ns, "CatRoom", f"k{pages * 7 % 2500:05d}-new{pages}"),
                     ActorId(ns, "CatRoom", f"z-new{pages}")]
            claims += await asyncio.gather(*(store.claim(a) for a in fresh))
            added.update(a.key for a in fresh)
            if page.next is None:
                break
            after = page.next
        assert len(seen) == len(set(seen)), "an actor was listed twice"
        assert {a.key for a in names} <= set(seen), "an actor was missed"
        assert set(seen) <= {a.key for a in names} | added
        assert pages >= 25
        # destroyed in bulk (pipelined), they are gone from the catalog
        for i in range(0, len(claims), 250):
            await asyncio.gather(*(store.destroy(c) for c in claims[i:i + 250]))
        assert await walk(node, 1000, namespace=ns) == []


# ---------------------------------------------------------------- inspect


async def test_inspect_shows_storage_by_module_decoded_and_bounded(
    store_factory: Callable[[], Any], unique: str
) -> None:
    ns = f"insp-{unique}"
    async with dna.Node(store=store_factory()) as node:
        room = node.ref(CatRoom, "lobby", ns)
        await room.put("b", {"x": [1, 2]})
        await room.put("a", b"\x00raw")
        assert await node.inspect(room) == {"kv": [("a", b"\x00raw"), ("b", {"x": [1, 2]})]}
        assert await node.inspect(room, limit=1) == {"kv": [("a", b"\x00raw")]}
        assert await node.store.dump(room.actor_id, 0) == []  # it exists, no row asked
        assert await node.store.dump(node.ref(CatRoom, "never", ns).actor_id, 5) is None
        assert await node.inspect(node.ref(CatRoom, "never", ns)) == {}
        with pytest.raises(TypeError, match="actor ref"):
            await node.inspect("lobby")
        with pytest.raises(ValueError, match="between 1 and"):
            await node.inspect(room, limit=0)


# ---------------------------------------------------------------- destroy


async def test_destroy_inside_a_handler_removes_everything_and_the_name_starts_fresh(
    store_factory: Callable[[], Any], unique: str
) -> None:
    ns = f"dest-{unique}"
    async with dna.Node(store=store_factory()) as node:
        room = node.ref(CatRoom, "doomed", ns)
        await room.put("a", 1)
        await node.ref(CatRoom, "bystander", ns).put("a", 2)
        assert CatRoom.activations.get((ns, "doomed")) == 1
        _, epoch = await node.store.owner_of(room.actor_id)
        assert await room.wipe(also="b") == "wiped"  # its reply waited for the destroy
        assert await node.inspect(room) == {}
        assert [e.key for e in await walk(node, 10, namespace=ns)] == ["bystander"]
        assert await room.get("a") is None  # a later message: empty storage ...
        assert CatRoom.activations[(ns, "doomed")] == 2  # ... in a fresh activation
        [entry] = [e for e in await walk(node, 10, namespace=ns) if e.key == "doomed"]
        assert entry.epoch > epoch and entry.active
        assert await node.inspect(node.ref(CatRoom, "bystander", ns)) == {"kv": [("a", 2)]}


async def test_node_side_destroy_then_a_message_starts_fresh(
    store_factory: Callable[[], Any], unique: str
) -> None:
    ns = f"ndest-{unique}"
    keep = store_factory()
    async with dna.Node(store=store_factory()) as node:
        room = node.ref(CatRoom, "doomed", ns)
        await room.put("a", 1)
        await node.destroy(room)  # active here
        assert await node.inspect(room) == {}
        assert await walk(node, 10, namespace=ns) == []
        await room.put("b", 2)
        assert await node.inspect(room) == {"kv": [("b", 2)]}
    async with dna.Node(store=keep) as node:  # passivated: destroy activates it to do it
        room = node.ref(CatRoom, "doomed", ns)
        await node.destroy(room)
        assert await node.inspect(room) == {}
        assert await walk(node, 10, namespace=ns) == []
        assert await room.get("b") is None
        with pytest.raises(TypeError, match="actor ref"):
            await node.destroy("doomed")


async def test_destroy_is_discarded_when_the_handler_raises_after_calling_it(
    store_factory: Callable[[], Any], unique: str
) -> None:
    ns = f"undo-{unique}"
    async with dna.Node(store=store_factory()) as node:
        room = node.ref(CatRoom, "survivor", ns)
        await room.put("a", 1)
        before = CatRoom.activations[(ns, "survivor")]
        with pytest.raises(dna.ActorError, match="changed my mind"):
            await room.wipe_then_fail()
        await room.put("b", 2)  # the same activation goes on, its storage intact
        assert await node.inspect(room) == {"kv": [("a", 1), ("b", 2)]}
        assert CatRoom.activations[(ns, "survivor")] == before
        assert [e.key for e in await walk(node, 10, namespace=ns)] == ["survivor"]


async def test_a_stale_owner_cannot_destroy(
    store_factory: Callable[[], Any], unique: str
) -> None:
    aid = ActorId(f"stale-{unique}", "CatRoom", "contested")
    old, new = store_factory(), store_factory()
    await old.open(f"old-{unique}")
    await new.open(f"new-{unique}")
    try:
        stale = await old.claim(aid)
        await old.commit(stale, [("kv", "a", b"\x01")])
        await old.set_draining(True)  # its actors may now be reclaimed
        current = await new.claim(aid)
        assert current.epoch == stale.epoch + 1
        with pytest.raises(StaleEpoch):
            await old.destroy(stale)
        assert await new.dump(aid, 10) == [("kv", "a", b"\x01")]
        assert await store_walk(new, aid.namespace) == [(aid, new.node_id, current.epoch)]
        await new.destroy(current)  # the owner can; an older claim never commits again
        assert await new.dump(aid, 10) is None  # gone
        assert await store_walk(new, aid.namespace) == []
        with pytest.raises(StaleEpoch):
            await old.commit(stale, [("kv", "b", b"\x02")])
        fresh = await new.claim(aid)
        assert fresh.epoch > current.epoch
        assert await new.dump(aid, 10) == []  # exists again, with nothing stored
    finally:
        await old.close()
        await new.close()


# ---------------------------------------------------------------- destroy and the commit path


class HoldStore(MemoryStore):
    """A MemoryStore whose commits wait for ``hold`` and fail while ``failing``;
    ``log`` records what reached the database, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = asyncio.Event()
        self.hold.set()
        self.entered = asyncio.Event()  # a commit is waiting on hold
        self.failing = False
        self.log: list[str] = []

    async def commit(self, claim: Claim, rows: list[Row]) -> None:
        self.entered.set()
        await self.hold.wait()
        if self.failing:
            raise StoreUnavailable("injected: database down")
        self.log.append("commit " + ",".join(k for _, k, _ in rows))
        await super().commit(claim, rows)

    async def destroy(self, claim: Claim) -> None:
        self.entered.set()
        await self.hold.wait()
        self.log.append("destroy")
        await super().destroy(claim)


class Doomed(dna.Actor):
    kv = KV()
    wiped: asyncio.Event | None = None  # set when wipe's handler has run

    @dna.call
    def put(self, key: str, value: Any) -> str:
        self.kv.write(key, value)
        return "ok"

    @dna.call
    def wipe(self) -> str:
        self.destroy()
        assert Doomed.wiped is not None
        Doomed.wiped.set()
        return "wiped"

    @dna.call
    async def get(self, key: str) -> Any:
        return await self.kv.read(key)

    @dna.cast
    def note(self, key: str, value: Any) -> None:
        self.kv.write(key, value)

    @dna.cast
    def wipe_cast(self, fail: bool) -> None:
        self.kv.write("during", True)
        self.destroy()
        if fail:
            raise RuntimeError("changed my mind")


async def test_destroy_waits_for_the_commit_in_flight_then_removes_it_too() -> None:
    store = HoldStore()
    Doomed.wiped = asyncio.Event()
    async with dna.Node(store=store) as node:
        ref = node.ref(Doomed, "x")
        await ref.put("a", 1)
        store.hold.clear()
        store.entered.clear()
        put = asyncio.ensure_future(ref.put("b", 2))
        await store.entered.wait()  # b's commit is in flight, held
        wipe = asyncio.ensure_future(ref.wipe())
        await Doomed.wiped.wait()  # the destroying batch ran meanwhile
        assert store.log == ["commit a"]
        store.hold.set()
        assert await put == "ok" and await wipe == "wiped"
        assert store.log == ["commit a", "commit b", "destroy"]
        assert await node.inspect(ref) == {}
        assert (await node.catalog(Doomed)).entries == []


async def test_destroy_is_dropped_when_the_commit_before_it_fails() -> None:
    store = HoldStore()
    Doomed.wiped = asyncio.Event()
    async with dna.Node(store=store) as node:
        ref = node.ref(Doomed, "x")
        await ref.put("a", 1)
        store.hold.clear()
        store.entered.clear()
        put = asyncio.ensure_future(ref.put("b", 2))
        await store.entered.wait()
        wipe = asyncio.ensure_future(ref.wipe())
        await Doomed.wiped.wait()
        store.failing = True
        store.hold.set()
        with pytest.raises(CommitFailed):
            await put
        with pytest.raises(CommitFailed):
            await wipe
        assert "destroy" not in store.log
        store.failing = False
        assert await node.inspect(ref) == {"kv": [("a", 1)]}  # as committed before
        assert await ref.put("c", 3) == "ok"  # a fresh activation serves it
        assert [e.key for e in await node.catalog(Doomed)] == ["x"]


async def test_a_client_node_destroys_an_actor_hosted_by_its_peer(unique: str) -> None:
    host = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s")
    client = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s",
                      host_actors=False)
    await host.start()
    await client.start()
    try:
        ref = client.ref(CatRoom, "far", f"remote-{unique}")
        await ref.put("a", 1)
        [entry] = (await client.catalog(CatRoom, namespace=f"remote-{unique}")).entries
        assert entry.owner == host.node_id and entry.active
        await client.destroy(ref)
        assert await host.inspect(host.ref(CatRoom, "far", f"remote-{unique}")) == {}
        assert (await client.catalog(CatRoom, namespace=f"remote-{unique}")).entries == []
        assert await ref.get("a") is None
    finally:
        await client.stop()
        await host.stop()


@pytest.mark.parametrize("fail", [False, True], ids=["destroyed", "handler-raised"])
async def test_messages_after_destroy_in_the_same_batch_run_in_order_afterwards(
    fail: bool,
) -> None:
    store = HoldStore()
    async with dna.Node(store=store) as node:
        ref = node.ref(Doomed, "x")
        await ref.note("a", 1)
        # one batch: a write, the destroying message, then two more writes
        ref.note.nowait("before", 0)
        ref.wipe_cast.nowait(fail)
        ref.note.nowait("b", 2)
        ref.note.nowait("c", 3)
        assert await ref.get("c") == 3
        kv = dict((await node.inspect(ref))["kv"])
        if fail:  # nothing of the destroy: the rest ran on the same actor, in order
            assert kv == {"a": 1, "before": 0, "b": 2, "c": 3}
            assert "destroy" not in store.log
        else:  # the batch up to the destroy went with the actor; the rest on the fresh one
            assert kv == {"b": 2, "c": 3}
            assert "destroy" in store.log


async def test_a_node_stopping_during_a_destroy_tells_the_caller_the_outcome_is_unknown() -> None:
    store = HoldStore()
    Doomed.wiped = asyncio.Event()
    node = dna.Node(store=store, stop_timeout=1.0)
    await node.start()
    try:
        ref = node.ref(Doomed, "x")
        await ref.note("a", 1)
        store.hold.clear()
        store.entered.clear()
        wipe = asyncio.ensure_future(ref.wipe())
        await store.entered.wait()  # the destroy is at the store, held
    finally:
        await node.stop()
    with pytest.raises(CommitUnknown, match="stopped"):
        await wipe

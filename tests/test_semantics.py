"""What users rely on at the edges: actor identity, deadlines that travel, call cycles,
DNA's own errors keeping their type through handlers, and handlers that cannot wedge
their actor or the node (issues 8 and 9)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tests.conftest import make_store

import dna
import dna.storage
from dna.errors import ActorRedefinedWarning, CallCycle, Retryable, Timeout

# ---------------------------------------------------------------- identity


def test_two_classes_cannot_share_a_type_name(unique: str) -> None:
    class First(dna.Actor):
        type_name = f"shared-{unique}"

        @dna.call
        def wipe(self) -> str:
            return "wiped"

    with pytest.raises(dna.InterfaceError, match="already used by"):
        type("Second", (dna.Actor,), {"type_name": f"shared-{unique}", "__module__": "other"})
    assert dna.actor.actor_type(f"shared-{unique}") is First


def test_redefining_a_class_in_its_module_replaces_it_with_a_warning(unique: str) -> None:
    def define(tag: str) -> type[dna.Actor]:
        class Cell(dna.Actor):
            type_name = f"cell-{unique}"

            @dna.call
            def which(self) -> str:
                return tag

        return Cell

    first = define("first")
    with pytest.warns(ActorRedefinedWarning, match="redefined"):
        second = define("second")
    assert dna.actor.actor_type(f"cell-{unique}") is second
    assert first is not second


# ---------------------------------------------------------------- helpers


class Slow(dna.Actor):
    ran: list[str] = []
    started = asyncio.Event()  # set when a wait begins (tests make a fresh one)

    @dna.call
    async def wait(self, seconds: float) -> str:
        Slow.started.set()
        await asyncio.sleep(seconds)
        return "waited"

    @dna.call
    def mark(self, tag: str) -> str:
        Slow.ran.append(tag)
        return tag


class Cyclic(dna.Actor):
    @dna.call
    async def call_self(self) -> Any:
        return await self.node.ref(Cyclic, self.key).ping()

    @dna.call
    async def call_other(self, other: str) -> Any:
        return await self.node.ref(Cyclic, other).call_back(self.key)

    @dna.call
    async def call_back(self, origin: str) -> Any:
        return await self.node.ref(Cyclic, origin).ping()

    @dna.call
    async def call_slow(self, key: str) -> Any:
        return await self.node.ref(Slow, key).wait.with_timeout(0.2)(1.0)

    @dna.call
    def ping(self) -> str:
        return "pong"


async def two_nodes(unique: str) -> tuple[dna.Node, dna.Node]:
    host = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s")
    client = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s",
                      host_actors=False)
    await host.start()
    await client.start()
    return host, client


# ---------------------------------------------------------------- deadlines


async def test_forwarded_call_carries_the_callers_deadline(unique: str) -> None:
    host, client = await two_nodes(unique)
    try:
        Slow.ran.clear()
        Slow.started = asyncio.Event()
        busy = client.ref(Slow, unique)
        first = asyncio.ensure_future(busy.wait(1.0))  # occupies the actor on the host
        await Slow.started.wait()
        t0 = time.monotonic()
        with pytest.raises(Timeout):
            await busy.mark.with_timeout(0.3)("late")
        assert time.monotonic() - t0 < 1.0
        assert await first == "waited"
        # the host knew the caller gave up at 0.3 s: it never ran the late call
        assert await busy.mark("after") == "after"
        assert Slow.ran == ["after"]
    finally:
        await client.stop()
        await host.stop()


# ---------------------------------------------------------------- cycles


async def test_call_to_self_fails_at_once_with_call_cycle(tmp_path: Any, unique: str) -> None:
    async with dna.Node(store=make_store("sqlite", tmp_path), call_timeout=5.0) as node:
        t0 = time.monotonic()
        with pytest.raises(CallCycle, match="call cycle") as info:
            await node.ref(Cyclic, unique).call_self()
        assert time.monotonic() - t0 < 1.0
        assert not isinstance(info.value, Retryable)
        assert await node.ref(Cyclic, unique).ping() == "pong"  # the actor still serves


async def test_a_b_a_cycle_is_named_in_the_error(tmp_path: Any, unique: str) -> None:
    async with dna.Node(store=make_store("sqlite", tmp_path), call_timeout=5.0) as node:
        t0 = time.monotonic()
        with pytest.raises(CallCycle) as info:
            await node.ref(Cyclic, f"a-{unique}").call_other(f"b-{unique}")
        assert time.monotonic() - t0 < 1.0
        assert f"a-{unique}" in str(info.value) and f"b-{unique}" in str(info.value)


async def test_cycle_across_nodes_is_detected(unique: str) -> None:
    host, client = await two_nodes(unique)
    try:
        t0 = time.monotonic()
        with pytest.raises(CallCycle):
            await client.ref(Cyclic, f"a-{unique}").call_other(f"b-{unique}")
        assert time.monotonic() - t0 < 2.0
    finally:
        await client.stop()
        await host.stop()


async def test_timeout_inside_a_handler_keeps_its_type(tmp_path: Any, unique: str) -> None:
    async with dna.Node(store=make_store("sqlite", tmp_path)) as node:
        with pytest.raises(Timeout) as info:
            await node.ref(Cyclic, unique).call_slow(f"slow-{unique}")
        assert isinstance(info.value, Retryable)


# ---------------------------------------------------------------- contained handlers


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class Wild(dna.Actor):
    @dna.call
    def raise_it(self, kind: str) -> None:
        raise _make(kind)

    @dna.call
    async def raise_async(self, kind: str) -> None:
        await asyncio.sleep(0)
        raise _make(kind)

    @dna.cast
    def cast_raise(self, kind: str) -> None:
        raise _make(kind)

    hanging = asyncio.Event()  # set once hang() runs (tests make a fresh one)

    @dna.call
    async def hang(self) -> None:
        Wild.hanging.set()
        await asyncio.Event().wait()

    @dna.call
    def ping(self) -> str:
        return "pong"


def _make(kind: str) -> BaseException:
    return {
        "cancelled": asyncio.CancelledError(),
        "unprintable": Unprintable(),
        "exit": SystemExit(3),
        "interrupt": KeyboardInterrupt(),
    }[kind]


@pytest.mark.parametrize("kind", ["cancelled", "unprintable", "exit", "interrupt"])
async def test_whatever_a_handler_raises_is_its_callers_error(
    tmp_path: Any, unique: str, kind: str
) -> None:
    node = dna.Node(store=make_store("sqlite", tmp_path), call_timeout=5.0)
    async with node:
        ref = node.ref(Wild, unique)
        for handler in (ref.raise_it, ref.raise_async):
            with pytest.raises(dna.ActorError):
                await handler(kind)
            assert await ref.ping() == "pong"  # the actor keeps serving
        await ref.cast_raise(kind)
        assert await ref.ping() == "pong"


async def test_stop_finishes_while_a_handler_hangs(tmp_path: Any, unique: str) -> None:
    node = dna.Node(store=make_store("sqlite", tmp_path), stop_timeout=0.5)
    await node.start()
    ref = node.ref(Wild, unique)
    assert await ref.ping() == "pong"
    Wild.hanging = asyncio.Event()
    hung = asyncio.ensure_future(ref.hang())
    await Wild.hanging.wait()
    t0 = time.monotonic()
    await asyncio.wait_for(node.stop(), 5.0)
    assert time.monotonic() - t0 < 3.0
    with pytest.raises(dna.errors.DNAError):
        await asyncio.wait_for(hung, 1.0)  # told at once, not at its 30 s deadline


# ---------------------------------------------------------------- bad writes fail alone


class Writer(dna.Actor):
    kv = dna.storage.KV()

    @dna.cast
    def put(self, key: str, value: Any) -> None:
        self.kv.write(key, value)

    @dna.call
    def put_call(self, key: str, value: Any) -> str:
        self.kv.write(key, value)
        return "ok"

    @dna.call
    async def get(self, key: str) -> Any:
        return await self.kv.read(key)


@pytest.mark.parametrize("store_kind", ["sqlite", pytest.param("cql", marks=pytest.mark.cql)])
async def test_a_bad_write_fails_alone_and_is_not_retryable(
    store_kind: str, tmp_path: Any, unique: str
) -> None:
    store = make_store(store_kind, tmp_path)
    if store_kind == "sqlite":  # SQLite's own limit is ~1 GB: test the check with less
        store.max_value_bytes = 1 << 16
    limit = store.max_value_bytes
    assert limit is not None
    async with dna.Node(store=store) as node:
        ref = node.ref(Writer, unique)
        # good and bad casts in one batch: only the bad ones fail
        for i in range(10):
            ref.put.nowait(f"good{i}", i)
        ref.put.nowait("bad\ud800", 1)  # a lone surrogate: no store can keep it
        ref.put.nowait("big", b"x" * (limit + 1))
        with pytest.raises(dna.ActorError) as bad_key:
            await ref.put_call("bad\ud800", 1)
        assert bad_key.value.remote_type == "ValueError"
        with pytest.raises(dna.errors.TooLarge) as big:
            await ref.put_call("big", b"x" * (limit + 1))
        assert not isinstance(big.value, Retryable)
        assert await ref.put_call("after", 1) == "ok"
        for i in range(10):
            assert await ref.get(f"good{i}") == i
        assert await ref.get("big") is None


async def test_a_lone_surrogate_in_an_actor_key_is_refused_at_the_ref(tmp_path: Any) -> None:
    async with dna.Node(store=make_store("sqlite", tmp_path)) as node:
        with pytest.raises(ValueError, match="surrogate"):
            node.ref(Writer, "k\udc00")


async def test_a_call_reaching_a_starting_node_is_refused_retryably(unique: str) -> None:
    """The transport listens before the store is open: a peer's call in between gets
    a retryable NotOwner, not a hard error."""
    starting = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s")
    starting._loop = asyncio.get_running_loop()
    await starting.cluster.start()  # listening, not yet registered in its store
    peer = dna.Node(store=dna.MemoryStore(name=f"{unique}-peer"), listen="127.0.0.1:0",
                    secret=b"s")
    async with peer:
        wire = ["dna.examples.Noop", "default", "k", [["ping", [], None]], 1, []]
        with pytest.raises(dna.NotOwner, match="still starting") as info:
            await peer.cluster.transport.request(starting.address, wire, 5.0)
        assert isinstance(info.value, Retryable)
    await starting.cluster.close()


# ---------------------------------------------------------------- placement


async def test_a_client_spreads_new_names_over_its_peers(unique: str) -> None:
    """Names created from a client node land on the peer rendezvous hashing picks, not
    all on the first peer; every node agrees on the pick."""
    hosts = [dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s")
             for _ in range(2)]
    client = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s",
                      host_actors=False)
    for n in (*hosts, client):
        await n.start()
    try:
        await client.cluster.refresh_peers()
        keys = [f"room-{i}" for i in range(40)]
        for k in keys:
            assert await client.ref(Slow, k).mark(k) == k
        counts = [h.activations for h in hosts]
        assert sum(counts) == 40 and min(counts) >= 8, counts
        from dna.cluster import rendezvous

        for k in keys:
            aid = client.ref(Slow, k).actor_id
            pick = max(hosts, key=lambda h: rendezvous(aid, h.node_id))
            assert aid in pick._routes and pick._routes[aid].__class__.__name__ == "Activation"
    finally:
        for n in (client, *hosts):
            await n.stop()


async def test_a_forwarded_call_arms_one_timer(unique: str) -> None:
    """One deadline timer per call, wherever it goes: the caller's (a forward reuses it
    to forget the call at the transport), not a second one at the transport's default."""
    import functools

    import dna.senders
    from dna.transport import _transport

    host, client = await two_nodes(unique)
    try:
        ref = client.ref(Slow, unique)
        assert await ref.mark("warm") == "warm"  # route and connection exist
        loop = asyncio.get_running_loop()
        deadline_timers: list[float] = []
        real_later, real_at = loop.call_later, loop.call_at

        def is_deadline(cb: Any) -> bool:
            fn = cb.func if isinstance(cb, functools.partial) else cb
            return fn in (dna.senders._expire, _transport._expire_call)

        def later(delay: float, cb: Any, *args: Any, **kw: Any) -> Any:
            if is_deadline(cb):
                deadline_timers.append(delay)
            return real_later(delay, cb, *args, **kw)

        def at(when: float, cb: Any, *args: Any, **kw: Any) -> Any:
            if is_deadline(cb):
                deadline_timers.append(when - loop.time())
            return real_at(when, cb, *args, **kw)

        loop.call_later, loop.call_at = later, at  # type: ignore[method-assign]
        try:
            with pytest.raises(Timeout):
                await ref.wait.with_timeout(0.3)(2.0)
        finally:
            loop.call_later, loop.call_at = real_later, real_at  # type: ignore[method-assign]
        assert len(deadline_timers) == 1 and deadline_timers[0] <= 0.3, deadline_timers
    finally:
        await client.stop()
        await host.stop()

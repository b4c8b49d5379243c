"""Exactly-once sends (``self.send``) on every store: recorded with the handler's
writes, delivered in order, a redelivery after a crash between the receiver's
commit and the sender's acknowledgement dropped, and delivery carried across a
receiver that moves to another node; misuse fails at the call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from tests.conftest import opened

import dna
from dna.storage import KV, Log, Outbox


class Receiver(dna.Actor):
    type_name = "tests.send.Receiver"
    log = Log()
    arrived: dict[str, asyncio.Event] = {}  # key -> set when a send ran (in-process tests)

    @dna.cast
    def take(self, value: Any) -> None:
        self.log.append(value)
        ev = Receiver.arrived.get(self.key)
        if ev is not None:
            ev.set()

    @dna.call
    async def values(self) -> list[Any]:
        return [v for _, v in await self.log.read(0, 100_000)]

    @dna.call
    def ping(self) -> str:
        return "pong"


class Sender(dna.Actor):
    type_name = "tests.send.Sender"
    outbox = Outbox()
    kv = KV()
    hold: dict[str, asyncio.Future[None]] = {}

    @dna.call
    def emit(self, to: str, values: list[Any], fail: bool = False) -> int:
        target = self.node.ref(Receiver, to).take
        for v in values:
            self.send(target, v)
        self.kv.write("emitted", values[-1] if values else None)
        if fail:
            raise RuntimeError("after sending")
        return len(values)

    @dna.call
    def backlog(self) -> int:
        return self.outbox.backlog

    @dna.call
    async def flushed(self) -> int:
        await self.outbox.flushed()
        return self.outbox.backlog

    @dna.call
    async def wait(self) -> None:
        await Sender.hold[self.key]

    @dna.call
    def misuse(self, how: str) -> str:
        target = self.node.ref(Receiver, "x").take
        try:
            if how == "not a handler":
                self.send(print, 1)
            elif how == "unpackable":
                self.send(target, object())
            elif how == "too large":
                self.send(target, b"x" * (64 << 20))
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return "accepted"


class Relay(dna.Actor):
    """Forwards what it is sent, except "bad", on which it raises after forwarding."""

    type_name = "tests.send.Relay"
    outbox = Outbox()
    kv = KV()

    @dna.cast
    def forward(self, value: Any) -> None:
        self.send(self.node.ref(Receiver, self.key).take, value)
        self.kv.write(str(value), value)
        if value == "bad":
            raise RuntimeError("after forwarding")

    @dna.call
    async def flushed(self) -> int:
        await self.outbox.flushed()
        return self.outbox.backlog

    @dna.call
    async def stored(self) -> list[Any]:
        return [k for k, _ in await self.kv.list()]


class Gated(dna.Actor):
    """A receiver whose ``take`` waits on ``gate[key]`` (when set) before it commits."""

    type_name = "tests.send.Gated"
    log = Log()
    gate: dict[str, asyncio.Future[None]] = {}
    entered: dict[str, asyncio.Event] = {}

    @dna.cast
    async def take(self, value: Any) -> None:
        ev = Gated.entered.get(self.key)
        if ev is not None:
            ev.set()
        fut = Gated.gate.get(self.key)
        if fut is not None:
            await fut
        self.log.append(value)

    @dna.call
    async def values(self) -> list[Any]:
        return [v for _, v in await self.log.read(0, 100_000)]


class GatedSender(dna.Actor):
    type_name = "tests.send.GatedSender"
    outbox = Outbox()

    @dna.call
    def emit(self, to: str, values: list[Any]) -> None:
        for v in values:
            self.send(self.node.ref(Gated, to).take, v)

    @dna.call
    async def flushed(self) -> int:
        await self.outbox.flushed()
        return self.outbox.backlog


class Plain(dna.Actor):
    type_name = "tests.send.Plain"

    @dna.call
    def emit(self) -> None:
        self.send(self.node.ref(Receiver, "x").take, 1)


Factory = Callable[[], Any]


async def settled(sender: Any) -> None:
    """Until every send of ``sender`` is acknowledged (the receiver committed it)."""
    assert await sender.flushed() == 0


async def test_sends_arrive_once_in_order(store_factory: Factory, unique: str) -> None:
    async with dna.Node(store=store_factory()) as node:
        s = node.ref(Sender, unique)
        r = node.ref(Receiver, unique)
        sent: list[int] = []
        for i in range(0, 600, 50):  # many batches, some of them concurrent
            chunk = list(range(i, i + 50))
            sent += chunk
            await asyncio.gather(s.emit(unique, chunk[:25]), s.emit(unique, chunk[25:]))
        await settled(s)
        assert await r.values() == sent


async def test_a_handler_that_raises_sends_nothing(store_factory: Factory, unique: str) -> None:
    async with dna.Node(store=store_factory()) as node:
        s = node.ref(Sender, unique)
        with pytest.raises(dna.ActorError, match="after sending"):
            await s.emit(unique, ["lost"], fail=True)
        await s.emit(unique, ["kept"])
        await settled(s)
        assert await node.ref(Receiver, unique).values() == ["kept"]


async def test_misuse_fails_at_the_call(tmp_path: Any, unique: str) -> None:
    async with dna.Node(store=dna.SQLiteStore(str(tmp_path / "db"))) as node:
        s = node.ref(Sender, unique)
        assert (await s.misuse("not a handler")).startswith("TypeError: self.send takes a "
                                                             "handler of a ref")
        assert (await s.misuse("unpackable")).startswith("TypeError")
        assert (await s.misuse("too large")).startswith("TooLarge")
        with pytest.raises(dna.InterfaceError, match="declares no Outbox"):
            await node.ref(Plain, unique).emit()
        outside = Sender()
        with pytest.raises(dna.InterfaceError, match="only inside a handler"):
            outside.send(node.ref(Receiver, unique).take, 1)
        assert await s.backlog() == 0


async def test_redelivery_after_a_crash_before_the_ack_is_dropped(
    store_factory: Factory, unique: str
) -> None:
    """The receiver commits; the sender dies before its acknowledgement commits (it is
    busy, then dropped without a final commit): its outbox row survives, the next
    activation delivers it again, and the receiver drops the duplicate."""
    Receiver.arrived[unique] = asyncio.Event()
    loop = asyncio.get_running_loop()
    Sender.hold[unique] = loop.create_future()
    node = dna.Node(store=store_factory(), stop_timeout=0.5)
    async with node:
        s = node.ref(Sender, unique)
        await s.emit(unique, ["once"])
        waiting = asyncio.ensure_future(s.wait())  # the ack cast queues behind this
        await Receiver.arrived[unique].wait()
        assert await node.ref(Receiver, unique).values() == ["once"]  # committed
    with pytest.raises(dna.InterfaceError):
        await waiting  # the busy sender was dropped: no final commit, no ack
    async with opened(store_factory()) as store:
        claim = await store.claim(dna.ActorId("default", Sender.type_name, unique))
        assert len(await store.list(claim, "outbox")) == 1  # the unacknowledged send
        await store.release(claim)
    del Receiver.arrived[unique]
    async with dna.Node(store=store_factory()) as node:
        s = node.ref(Sender, unique)
        await settled(s)  # activated again: delivered again, acknowledged
        assert await node.ref(Receiver, unique).values() == ["once"]
        await s.emit(unique, ["twice"])
        await settled(s)
        assert await node.ref(Receiver, unique).values() == ["once", "twice"]
    async with opened(store_factory()) as store:
        claim = await store.claim(dna.ActorId("default", Sender.type_name, unique))
        assert await store.list(claim, "outbox") == []  # acknowledged rows are deleted
        await store.release(claim)


async def test_delivery_follows_a_receiver_that_moves(unique: str) -> None:
    """The receiver lives on node B; B drains while sends flow; they land on A, in
    order, each once."""
    a = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s")
    b = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s")
    await a.start()
    await b.start()
    try:
        assert await b.ref(Receiver, unique).ping() == "pong"  # the receiver lives on B
        s = a.ref(Sender, unique)
        sent = list(range(300))
        for i in range(0, 150, 10):
            await s.emit(unique, sent[i:i + 10])
        drained = asyncio.ensure_future(b.drain())
        for i in range(150, 300, 10):
            await s.emit(unique, sent[i:i + 10])
        await drained
        await settled(s)
        assert a.activations == 2  # sender and receiver: the receiver moved to A
        assert await a.ref(Receiver, unique).values() == sent
    finally:
        await a.stop()
        await b.stop()


async def test_a_relayed_send_whose_handler_raises_goes_alone(
    store_factory: Factory, unique: str
) -> None:
    """Sends delivered together run as one handler each: the one that raises loses its
    writes and its own onward send, the others keep theirs."""
    async with dna.Node(store=store_factory()) as node:
        relay = node.ref(Relay, unique)
        target = node.ref(Receiver, unique)
        values = ["a", "bad", "b", "c", "bad", "d"]

        class Hop(dna.Actor):
            type_name = f"tests.send.Hop-{unique}"
            outbox = Outbox()

            @dna.call
            def go(self) -> None:
                for v in values:
                    self.send(relay.forward, v)

            @dna.call
            async def flushed(self) -> int:
                await self.outbox.flushed()
                return self.outbox.backlog

        hop = node.ref(Hop, unique)
        await hop.go()
        assert await hop.flushed() == 0
        assert await relay.flushed() == 0
        assert await target.values() == ["a", "b", "c", "d"]
        assert await relay.stored() == ["a", "b", "c", "d"]


async def test_a_handler_sending_more_than_a_row_holds(store_factory: Factory, unique: str) -> None:
    """Sends of one handler beyond ROW_BYTES go on in further rows, still in order."""
    from dna.storage.outbox import ROW_BYTES

    async with dna.Node(store=store_factory()) as node:
        s = node.ref(Sender, unique)
        big = [f"{i:04d}" + "x" * 50_000 for i in range(2 * ROW_BYTES // 50_000 + 3)]
        assert await s.emit(unique, big) == len(big)
        assert await s.flushed() == 0
        assert await node.ref(Receiver, unique).values() == big


async def test_a_delivery_whose_predecessor_was_lost_is_refused(
    store_factory: Factory, unique: str
) -> None:
    """Deliveries are pipelined, each naming the send before it: the receiver refuses
    (whole) one whose predecessor it has not committed, so a lost call cannot let a
    later one overtake it; once the predecessor is in, it is taken."""
    from dna._core import pack

    async with dna.Node(store=store_factory()) as node:
        r = node.ref(Receiver, unique)
        sender = ["default", Sender.type_name, f"fake-{unique}"]

        def entry(seq: int, value: str) -> list[Any]:
            packed = pack(["default", Receiver.type_name, unique, "take", [value], None])
            return [f"{1:016x}{seq:016x}{0:08x}", packed]

        first, second = entry(1, "first"), entry(2, "second")
        with pytest.raises(dna.ActorError, match="OutOfOrder"):
            await r._dna_deliver(sender, first[0], [second])  # "first" was lost
        assert await r.values() == []
        assert await r._dna_deliver(sender, "", [first]) == 1
        assert await r._dna_deliver(sender, first[0], [second]) == 1
        assert await r._dna_deliver(sender, "", [first, second]) == 0  # redelivered: dropped
        assert await r.values() == ["first", "second"]


async def until(check: Callable[[], Any], what: str, deadline: float = 20.0) -> Any:
    """Poll the coroutine function ``check`` until it returns a true value."""
    end = asyncio.get_running_loop().time() + deadline
    while True:
        got = await check()
        if got:
            return got
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"{what}: not within {deadline} s (last: {got!r})")
        await asyncio.sleep(0.05)


async def test_sends_of_a_sender_whose_node_died_are_delivered_without_it_being_called(
    store_factory: Factory, unique: str, monkeypatch: Any
) -> None:
    """The sender commits a send; its node dies before the receiver committed it. No
    one ever messages the sender again: a live node still wakes it (its outbox keeps a
    wake-up timer while sends are unacknowledged) and the send arrives, once; once all
    is acknowledged the wake-up timer is gone."""
    from dna.storage import outbox

    monkeypatch.setattr(outbox, "WAKE_AFTER", 0.3, raising=False)
    loop = asyncio.get_running_loop()
    Gated.gate[unique] = loop.create_future()  # never resolved: the first node dies first
    Gated.entered[unique] = asyncio.Event()
    try:
        first = dna.Node(store=store_factory(), stop_timeout=0.3)
        async with first:
            await first.ref(GatedSender, unique).emit(unique, ["late", "later"])
            await Gated.entered[unique].wait()  # delivered, held before the receiver commits
        del Gated.gate[unique]
        async with dna.Node(store=store_factory(), timer_poll=0.05) as node:
            gated = node.ref(Gated, unique)
            assert await until(gated.values, "the sends delivered") == ["late", "later"]
            sender = node.ref(GatedSender, unique)

            async def no_wake() -> bool:
                rows = await node.inspect(sender)
                return not rows.get("dna.timers") and not rows.get("outbox")

            await until(no_wake, "the outbox emptied and its wake-up timer removed")
            assert await gated.values() == ["late", "later"]  # once each
    finally:
        Gated.gate.pop(unique, None)
        Gated.entered.pop(unique, None)

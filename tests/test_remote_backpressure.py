"""Casts to an actor on another node over real TCP: order holds and the sender
waits when the connection is full instead of buffering without bound."""

from __future__ import annotations

import asyncio
import time

import pytest

import dna
from dna.cluster import MAX_FRAME_CASTS


class Seq(dna.Actor):
    def __init__(self) -> None:
        self.last = -1
        self.out_of_order = 0
        self.count = 0

    @dna.cast
    def see(self, i: int, pad: bytes) -> None:
        if i != self.last + 1:
            self.out_of_order += 1
        self.last = i
        self.count += 1

    @dna.call
    def report(self) -> list[int]:
        return [self.count, self.out_of_order]


async def test_remote_casts_keep_order_and_apply_backpressure(unique: str) -> None:
    host = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s")
    client = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s",
                      host_actors=False)
    async with host, client:
        ref = client.ref(Seq, "s")
        await ref.report()  # activated on host
        route = client._routes[ref.actor_id]
        n = 60_000
        pad = b"x" * 200  # ~12 MB in all: more than a socket buffer holds
        most_buffered = 0
        yields = 0

        def tick() -> None:  # runs only when the sender yields to the loop
            nonlocal yields
            yields += 1

        for i in range(n):
            if i % 1000 == 0:
                asyncio.get_running_loop().call_soon(tick)
            await ref.see(i, pad)
            most_buffered = max(most_buffered, len(route.inbox.mailbox))
        yielded = yields  # counted before anything else awaits: only the sends yielded
        count, out_of_order = await ref.report()
        assert (count, out_of_order) == (n, 0)
        assert most_buffered <= MAX_FRAME_CASTS
        assert yielded > n // MAX_FRAME_CASTS  # the sender waited for room, again and again


class SlowWorker(dna.Actor):
    @dna.cast
    def work(self, pad: bytes) -> None:
        time.sleep(0.00002)  # a slow actor: its mailbox fills up

    @dna.call
    def ping(self) -> str:
        return "pong"


async def test_a_receiver_bounds_what_it_queues_for_a_peer(unique: str) -> None:
    """Flow control: casts from a peer into a full mailbox wait at the sender, so the
    receiving node never queues more than about its mailbox for one peer (without it,
    90% of a flood sat in the receiver's memory), and a call still gets through."""
    mailbox = 500
    host = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s",
                    mailbox_size=mailbox, max_batch=mailbox)
    client = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s",
                      host_actors=False)
    async with host, client:
        ref = client.ref(SlowWorker, "s")
        assert await ref.ping() == "pong"
        inbox = host._routes[ref.actor_id].inbox
        most = 0
        done = False

        async def watch() -> None:
            nonlocal most
            while not done:
                most = max(most, inbox.waiting)
                await asyncio.sleep(0.002)

        watcher = asyncio.ensure_future(watch())
        pad = b"x" * 100
        for _ in range(20_000):
            await ref.work(pad)
        t0 = time.monotonic()
        assert await ref.ping() == "pong"
        call_s = time.monotonic() - t0
        done = True
        await watcher
        assert most <= mailbox + MAX_FRAME_CASTS, most
        assert call_s < 5.0


class Paced(dna.Actor):
    gate: asyncio.Event  # set by the test: the first cast waits on it

    def __init__(self) -> None:
        self.got: list[int] = []

    @dna.cast
    async def see(self, i: int) -> None:
        await Paced.gate.wait()
        self.got.append(i)

    @dna.call
    def report(self) -> list[int]:
        return self.got


async def test_a_peer_is_paced_by_what_the_actor_takes(unique: str) -> None:
    """A peer's casts give their credit back when the activation takes them, not when
    they enter its mailbox: so a peer can never fill the mailbox and then queue more
    behind it (each such message took the slow waiting path on the receiver); what
    the node holds for it is its mailbox, the rest waits at the sender."""
    mailbox = 500
    Paced.gate = asyncio.Event()
    host = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s",
                    mailbox_size=mailbox)
    client = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s",
                      host_actors=False)
    async with host, client:
        ref = client.ref(Paced, "g")
        assert await ref.report() == []  # activated on host
        await ref.see(-1)  # its handler will wait on the gate
        route = client._routes[ref.actor_id]
        transport = client.cluster.transport
        n = 3 * mailbox
        for i in range(n):
            await ref.see(i)
        inbox = host._routes[ref.actor_id].inbox
        deadline = time.monotonic() + 10
        # until the sender holds frames for want of credit (or, unpaced, all arrived)
        while not transport.congested(route.address, route) and len(inbox) < n:
            assert time.monotonic() < deadline, "the casts neither arrived nor wait"
            await asyncio.sleep(0)
        assert inbox.waiting == 0  # nothing queued behind the full mailbox
        assert len(inbox) <= mailbox + 1  # a frame may overdraw the credit by one
        Paced.gate.set()
        assert await ref.report() == [-1, *range(n)]  # all of them, in order


class Sink(dna.Actor):
    def __init__(self) -> None:
        self.got = 0

    @dna.cast
    def take(self, pad: bytes) -> None:
        self.got += 1

    @dna.call
    def count(self) -> int:
        return self.got


async def test_casts_too_many_for_one_frame_all_arrive(unique: str) -> None:
    """4,096 casts of 5 KB to a peer's actor are 20 MB: more than one 16 MiB frame.
    They are sent in frames that fit, in order; none is dropped."""
    host = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s")
    client = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s",
                      host_actors=False)
    async with host, client:
        ref = client.ref(Sink, "s")
        assert await ref.count() == 0
        pad = b"x" * 5000
        for _ in range(MAX_FRAME_CASTS):
            ref.take.nowait(pad)
        assert await ref.count() == MAX_FRAME_CASTS


@pytest.mark.parametrize("where", ["local", "remote"])
async def test_a_message_over_the_frame_limit_fails_at_the_sender(
    unique: str, where: str
) -> None:
    host = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s")
    client = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s",
                      host_actors=False)
    async with host, client:
        sender = host if where == "local" else client
        ref = sender.ref(Sink, "s")
        big = b"x" * (17 * 1024 * 1024)
        with pytest.raises(dna.errors.TooLarge, match="nothing was sent"):
            await ref.take(big)
        with pytest.raises(dna.errors.TooLarge):
            ref.take.nowait(big)
        with pytest.raises(dna.errors.TooLarge):
            await ref.count.with_timeout(5)(pad=big)  # type: ignore[call-arg]
        assert await ref.count() == 0


class Gated(dna.Actor):
    """A cast handler that waits for the test to open its gate: its mailbox fills."""

    gate: asyncio.Event | None = None

    def __init__(self) -> None:
        self.seen: list[int] = []

    @dna.cast
    async def work(self, i: int) -> None:
        assert Gated.gate is not None
        await Gated.gate.wait()
        self.seen.append(i)

    @dna.call
    def report(self) -> list[int]:
        seen = self.seen
        return [len(seen), sum(1 for i in range(1, len(seen)) if seen[i] != seen[i - 1] + 1)]


async def test_calls_to_other_actors_do_not_wait_behind_a_cast_backlog(unique: str) -> None:
    """One peer's casts pile up behind a blocked actor until the connection's credit is
    spent; the same peer's calls to another actor are still answered at once (before:
    they waited behind the casts until the blocked actor moved)."""
    Gated.gate = asyncio.Event()
    host = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s",
                    mailbox_size=100, max_batch=100)
    client = dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s",
                      host_actors=False)
    async with host, client:
        slow, other = client.ref(Gated, "slow"), client.ref(SlowWorker, "other")
        assert await other.ping() == "pong"
        for i in range(2_000):  # far beyond the host's mailbox + its credit window (100)
            slow.work.nowait(i)
            if i % 100 == 99:
                await asyncio.sleep(0)  # a frame each: beyond the credit they are held
        transport = client.cluster.transport
        address = client._routes[slow.actor_id].address
        deadline = time.monotonic() + 10.0
        while not transport.congested(address):  # the backlog reached the connection
            assert time.monotonic() < deadline, "the casts never filled the window"
            await asyncio.sleep(0.01)
        for _ in range(20):
            assert await other.ping.with_timeout(3.0)() == "pong"
        assert transport.congested(address)  # the backlog is still there
        Gated.gate.set()
        assert await slow.report.with_timeout(30.0)() == [2_000, 0]  # all, in order

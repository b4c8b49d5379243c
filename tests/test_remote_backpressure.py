"""Casts to an actor on another node over real TCP: order holds and the sender
waits when the connection is full instead of buffering without bound."""

from __future__ import annotations

import asyncio

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

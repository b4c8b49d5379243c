"""asv benchmarks of ``dna.transport``: two authenticated transports on one
event loop talking over loopback TCP (the cross-process figure is
``bench/transport_rtt.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

from dna.transport import Transport

SECRET = b"asv secret"


def _echo(peer: str, msg: Any) -> Any:
    return msg


class TransportLoopback:
    timeout = 120.0

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.received = 0
        self.target = 0  # _count sets all_received when received reaches it
        self.all_received = asyncio.Event()
        self.server = Transport("server", SECRET, on_request=_echo, on_message=self._count)
        self.client = Transport("client", SECRET, on_request=_echo, on_message=self._count)
        self.loop.run_until_complete(self.server.start("127.0.0.1", 0))
        self.address = self.server.address or ""
        self.loop.run_until_complete(self.client.request(self.address, b"warm up", 10.0))

    def teardown(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.run_until_complete(self.server.close())
        self.loop.close()

    def _count(self, peer: str, msg: Any) -> None:
        self.received += 1
        if self.received == self.target:
            self.all_received.set()

    async def _sequential(self, n: int) -> None:
        for _ in range(n):
            await self.client.request(self.address, b"x", 10.0)

    async def _concurrent(self, n: int) -> None:
        await asyncio.gather(*(self.client.request(self.address, b"x", 10.0) for _ in range(n)))

    async def _sends(self, n: int) -> None:
        self.all_received.clear()
        self.target = self.received + n
        for _ in range(n):
            self.client.send(self.address, b"x")
        await self.all_received.wait()

    def time_1000_sequential_calls(self) -> None:
        self.loop.run_until_complete(self._sequential(1000))

    def time_10000_concurrent_calls(self) -> None:
        self.loop.run_until_complete(self._concurrent(10_000))

    def time_10000_one_way_sends(self) -> None:
        self.loop.run_until_complete(self._sends(10_000))

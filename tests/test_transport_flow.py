"""Bounded memory toward a peer that does not read: its connection is closed
once what we hold unsent for it passes ``max_unsent``."""

from __future__ import annotations

from typing import Any

from dna._core import encode_frame
from dna.transport_wire import REQUEST
from test_transport import eventually, handshake, make, port_of, raw, started, warned

MiB = 1024 * 1024


async def test_a_peer_that_never_reads_its_replies_is_cut_off(caplog: Any) -> None:
    b = make("b", on_request=lambda peer, msg: b"x" * MiB, max_unsent=8 * MiB)
    async with started(b) as (addr_b,):
        async with raw(port_of(b)) as (reader, writer):
            peer = await handshake(reader, writer)
            for rid in range(100):  # 100 MiB of replies, none of them read
                peer.write(encode_frame([REQUEST, rid, 30.0, "get"]))
            await writer.drain()
            await eventually(lambda: warned(caplog, "does not read"), within=10.0)
            assert not [c for c in b._all if c.peer_id == "raw"]
        c = make("c")  # everyone else is served
        try:
            assert await c.request(addr_b, "get", 5.0) == b"x" * MiB
        finally:
            await c.close()


async def test_a_slow_reader_under_the_bound_is_not_cut_off() -> None:
    a = make("a")
    b = make("b", on_request=lambda peer, msg: b"x" * MiB, max_unsent=64 * MiB)
    async with started(a, b) as (_, addr_b):
        replies = [await a.request(addr_b, i, 10.0) for i in range(20)]
        assert all(len(r) == MiB for r in replies)

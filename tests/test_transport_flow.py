"""Flow control between peers: a receiver bounds what a peer may have
delivered and not released (credit), replies are never held behind
requests, and a peer that does not read is cut off once what we hold
unsent for it passes ``max_unsent``."""

from __future__ import annotations

from typing import Any

import pytest

from dna._core import encode_frame
from dna.errors import Timeout
from dna.transport import Transport
from dna.transport._wire import MESSAGE, REQUEST
from test_transport import (
    closed_by_peer,
    eventually,
    handshake,
    make,
    port_of,
    raw,
    started,
    warned,
)

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


def _stalled(t: Transport) -> bool:
    """The raw peer's connection is gone, or holds calls it cannot start yet with none
    running (everything the node will do until the peer reads is done)."""
    conns = [c for c in t._all if c.peer_id == "raw"]
    return not conns or (bool(getattr(conns[0], "waiting", None))
                         and getattr(conns[0], "running", 1) == 0)


async def test_calls_whose_replies_nobody_reads_do_not_start() -> None:
    # before: all 400 handlers ran and their 400 MiB of replies sat in the node
    handled = 0

    def get(peer: str, msg: Any) -> bytes:
        nonlocal handled
        handled += 1
        return b"x" * MiB

    b = make("b", on_request=get, max_unsent=8 * MiB)
    async with started(b):
        async with raw(port_of(b)) as (reader, writer):
            peer = await handshake(reader, writer)
            # one record: the node sees all 400 calls before it writes any reply
            peer.write(b"".join(encode_frame([REQUEST, rid, 30.0, "get"]) for rid in range(400)))
            await writer.drain()
            await eventually(lambda: handled == 400 or _stalled(b), within=10.0)
            assert handled <= 16 + 1, f"{handled} handlers ran for replies nobody reads"
            assert b.peak_unsent <= 2 * 8 * MiB


async def test_calls_held_for_a_slow_reader_start_as_it_reads() -> None:
    handled = 0

    def get(peer: str, msg: Any) -> bytes:
        nonlocal handled
        handled += 1
        return msg.to_bytes(4, "big") * (MiB // 4)

    b = make("b", on_request=get, max_unsent=32 * MiB)
    async with started(b):
        async with raw(port_of(b)) as (reader, writer):
            peer = await handshake(reader, writer)
            for rid in range(200):
                peer.write(encode_frame([REQUEST, rid, 60.0, rid]))
                peer.write(encode_frame([MESSAGE, rid]))  # casts keep their place
            await writer.drain()
            await eventually(lambda: _stalled(b), within=10.0)
            assert handled < 64
            assert [c for c in b._all if c.peer_id == "raw"], "a reader was cut off"
            got = {}
            while len(got) < 200:  # now read: every call starts and is answered
                frame = await peer.read_frame(within=10.0)
                assert frame[0] == 1, frame
                got[frame[1]] = frame[2]
            assert all(v[:4] == rid.to_bytes(4, "big") for rid, v in got.items())
            assert handled == 200
            assert b.peak_unsent <= 32 * MiB + 2 * MiB


# ---------------------------------------------------------------- credit


class Inbox:
    """A receiver that holds what it gets and releases it only when told (manual_release)."""

    def __init__(self) -> None:
        self.t: Transport | None = None
        self.got: list[Any] = []
        self.sources: list[Any] = []

    def on_message(self, peer: str, msg: Any) -> None:
        assert self.t is not None
        self.got.append(msg)
        self.sources.append(self.t.source)

    def release(self, n: int) -> None:
        for src in self.sources[:n]:
            src.release()
        del self.sources[:n]


async def test_a_receiver_bounds_what_it_holds_and_replies_still_flow() -> None:
    inbox = Inbox()
    calls: list[Any] = []

    def on_request(peer: str, msg: Any) -> Any:
        calls.append(msg)
        return msg

    a = make("a")
    b = make("b", on_message=inbox.on_message, on_request=on_request, window=100,
             manual_release=True)
    inbox.t = b
    async with started(a, b) as (addr_a, addr_b):
        for i in range(1000):
            a.send(addr_b, i)
        conn = a._conns[addr_b]
        await eventually(lambda: len(inbox.got) == 100 and len(conn.held) == 900)
        assert a.congested(addr_b)
        # a may send b no more items, yet a's answers to b's calls are never held
        assert await b.request(addr_a, "are replies blocked?", 2.0) == ["b", "are replies blocked?"]
        with pytest.raises(Timeout):  # a call from a waits behind a's casts...
            await a.request(addr_b, "late", 0.3)
        inbox.release(60)
        await eventually(lambda: len(inbox.got) >= 150)  # grants go in batches of 25
        while len(inbox.got) < 1000:
            inbox.release(len(inbox.sources))
            await eventually(lambda: bool(inbox.sources) or len(inbox.got) == 1000)
        assert inbox.got == list(range(1000))  # in order, none lost
        await a.writable(addr_b)
        assert not a.congested(addr_b)
        assert await a.request(addr_b, "now", 2.0) == "now"
        assert calls == ["now"]  # ...and once expired it was never sent


async def test_a_peer_that_ignores_its_credit_is_cut_off(caplog: Any) -> None:
    b = make("b", window=64, manual_release=True)
    async with started(b):
        async with raw(port_of(b)) as (reader, writer):
            peer = await handshake(reader, writer)
            peer.write(b"".join(encode_frame([MESSAGE, i]) for i in range(65)))
            assert await closed_by_peer(reader) < 1.0
        assert warned(caplog, "beyond its credit")


async def test_calls_have_a_window_of_their_own(caplog: Any) -> None:
    """64 one-way items and 64 calls fit the two windows of 64; one call more is cut off."""
    b = make("b", window=64, manual_release=True, on_request=lambda peer, msg: None)
    async with started(b):
        async with raw(port_of(b)) as (reader, writer):
            peer = await handshake(reader, writer)
            peer.write(b"".join(encode_frame([MESSAGE, i]) for i in range(64)))
            peer.write(b"".join(encode_frame([REQUEST, i, 30.0, i]) for i in range(64)))
            for _ in range(64):  # every call answered: the messages did not use its credit
                assert (await peer.read_frame())[0] == 1
            peer.write(encode_frame([REQUEST, 64, 30.0, 64]))
            assert await closed_by_peer(reader) < 1.0
        assert warned(caplog, "beyond its call credit")

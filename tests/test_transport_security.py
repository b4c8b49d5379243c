"""Attacks on the transport's authentication, played by real sockets against a
real ``Transport`` on 127.0.0.1: reflection of a node's own handshake, and an
on-path relay that injects or replays frames after a good handshake."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from ssl import SSLContext
from typing import Any

import msgpack
import pytest

from dna._core import encode_frame
from dna.transport._auth import build_hello, new_nonce, parse_hello
from dna.transport._wire import MESSAGE, PING, REQUEST
from test_transport import (
    LOOPBACK,
    closed_by_peer,
    eventually,
    handshake,
    make,
    make_and_call,
    port_of,
    raw,
    started,
    warned,
)


async def read_hello(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The raw HELLO the peer sent first, and the bytes read past it."""
    buf = b""
    while (parsed := parse_hello(buf)) is None:
        chunk = await asyncio.wait_for(reader.read(1024), 2.0)
        if not chunk:
            raise ConnectionError("closed before its HELLO")
        buf += chunk
    return buf[: parsed[1]], buf[parsed[1]:]


@contextlib.asynccontextmanager
async def listener(
    ssl: SSLContext | None = None,
) -> AsyncIterator[tuple[str, asyncio.Queue[Any]]]:
    """A plain TCP listener; yields its address and a queue of accepted (reader, writer)."""
    accepted: asyncio.Queue[Any] = asyncio.Queue()

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    server = await asyncio.start_server(on_conn, LOOPBACK, 0, ssl=ssl)
    try:
        yield f"{LOOPBACK}:{server.sockets[0].getsockname()[1]}", accepted
    finally:
        server.close()
        while not accepted.empty():
            accepted.get_nowait()[1].close()


async def reflect(victim_port: int, bait: Any) -> tuple[str, bytes]:
    return await reflect_over(victim_port, bait, None, None)


async def reflect_over(
    victim_port: int, bait: Any, client_ssl: SSLContext | None, server_ssl: SSLContext | None
) -> tuple[str, bytes]:
    """The reflection attack, without the secret (over TLS with the contexts given).

    Connection 1: the attacker dials the victim and reads its HELLO. ``bait()``
    makes the victim dial the attacker (connection 2); the attacker answers
    there with the victim's own HELLO from connection 1, so the victim's PROOF
    on connection 2 is the one connection 1 expects from its client. The
    attacker replays it on connection 1 and injects a cast and a call.
    Returns how far it got ("refused at ..." or "injected") and what the
    victim sent back on connection 1 afterwards.
    """
    async with (
        listener(server_ssl) as (attacker_addr, accepted),
        raw(victim_port, client_ssl) as (r1, w1),
    ):
        h1, _ = await read_hello(r1)
        bait(attacker_addr)
        r2, w2 = await asyncio.wait_for(accepted.get(), 2.0)
        h2, _ = await read_hello(r2)
        w2.write(h1)  # the victim's own HELLO, reflected
        try:
            proof = await asyncio.wait_for(r2.readexactly(32), 2.0)
        except (asyncio.IncompleteReadError, ConnectionError):
            return "refused at the reflected hello", b""
        finally:
            w2.close()
        w1.write(h2 + proof)
        w1.write(encode_frame([MESSAGE, "injected cast"]))
        w1.write(encode_frame([REQUEST, 7, 5.0, "injected call"]))
        back = b""
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            while chunk := await asyncio.wait_for(r1.read(65536), 2.0):
                back += chunk
                if b"injected call" in back:
                    return "injected", back
        return "refused on connection 1", back


async def test_reflection_of_a_nodes_own_hello_is_refused() -> None:
    delivered: list[Any] = []

    def on_request(peer: str, msg: Any) -> Any:
        delivered.append(msg)
        return msg

    victim = make("victim", on_request=on_request, on_message=lambda p, m: delivered.append(m))
    async with started(victim):
        outcome, _ = await reflect(port_of(victim), lambda addr: victim.send(addr, "bait"))
        assert outcome != "injected"
        assert delivered == []


async def test_reflected_hello_is_refused_with_a_clear_reason(caplog: Any) -> None:
    victim = make("victim")
    async with started(victim):
        await reflect(port_of(victim), lambda addr: victim.send(addr, "bait"))
    assert any("our own" in r.getMessage() for r in caplog.records if r.name == "dna.transport")


async def test_a_hello_carrying_our_own_nonce_is_refused() -> None:
    victim = make("victim")
    async with started(victim):
        async with raw(port_of(victim)) as (r1, w1):
            h1, _ = await read_hello(r1)
            forged = bytearray(h1)
            # same nonce, another node id (its length byte follows the nonce)
            at = len(h1) - 1 - len(victim.address or "") - 1 - len("victim")
            forged[at:at + 1 + len("victim")] = bytes((len("mallory"),)) + b"mallory"
            assert parse_hello(bytes(forged)) is not None
            w1.write(bytes(forged))
            assert await closed_by_peer(r1) < 1.0


# ---------------------------------------------------------------- an on-path relay


class Relay:
    """A TCP proxy between a dialling transport and a listening one: forwards
    both ways, and can inject bytes, replay what it forwarded, or go silent
    (hold all data, close nothing) like a blackholed link."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.to_server: list[asyncio.StreamWriter] = []  # per relayed connection
        self.sent_up: bytearray = bytearray()  # client-to-server bytes since mark()
        self.silent = False  # blackholed: read and hold, forward nothing
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: list[asyncio.StreamWriter] = []

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"{LOOPBACK}:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Relay:
        self.server = await asyncio.start_server(self._accept, LOOPBACK, 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        for t in list(self.tasks):
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _accept(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection(LOOPBACK, self.target_port)
        self.writers += [cw, sw]
        self.to_server.append(sw)
        for reader, writer, up in ((cr, sw, True), (sr, cw, False)):
            task = asyncio.ensure_future(self._pump(reader, writer, up))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    up: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if self.silent:
                    continue  # held for ever: no data, no FIN, no RST
                if up:
                    self.sent_up += data
                writer.write(data)
        writer.close()

    def mark(self) -> None:
        self.sent_up = bytearray()

    def inject(self, data: bytes) -> None:
        self.to_server[-1].write(data)


async def test_relay_cannot_inject_a_frame_after_a_good_handshake(caplog: Any) -> None:
    got: list[Any] = []
    a, b = make("a"), make("b", on_message=lambda p, m: got.append(m))
    async with started(a, b) as (_, addr_b), Relay(port_of(b)) as relay:
        assert await a.request(relay.address, "hello", 2.0) == ["a", "hello"]
        relay.inject(encode_frame([MESSAGE, "injected"]))
        a.send(relay.address, "legit")
        await eventually(lambda: bool(got) or not b._all)
        assert "injected" not in got
        await eventually(lambda: not b._all)  # b closed the tampered connection
        assert warned(caplog, "failed authentication")
        assert await a.request(addr_b, "still serving", 2.0) == ["a", "still serving"]


async def test_relay_cannot_replay_what_it_forwarded(caplog: Any) -> None:
    got: list[Any] = []
    a, b = make("a"), make("b", on_message=lambda p, m: got.append(m))
    async with started(a, b), Relay(port_of(b)) as relay:
        assert await a.request(relay.address, "hello", 2.0) == ["a", "hello"]
        relay.mark()
        a.send(relay.address, "pay 100")
        await eventually(lambda: got == ["pay 100"])
        relay.inject(bytes(relay.sent_up))  # the same bytes again
        await eventually(lambda: len(got) > 1 or not b._all)
        assert got == ["pay 100"]
        await eventually(lambda: not b._all)
        assert warned(caplog, "failed authentication")


# ---------------------------------------------------------------- hostile frames and names


async def test_a_node_id_with_newline_or_escape_is_never_logged_raw(caplog: Any) -> None:
    b = make("b")
    async with started(b):
        async with raw(port_of(b)) as (reader, writer):
            evil = "evil\n2026-01-01 CRITICAL forged line\x1b[2J"
            writer.write(build_hello(True, new_nonce(), evil, "") + b"\x00" * 32)  # bad proof
            assert await closed_by_peer(reader) < 1.0
        assert warned(caplog, "authentication failed")
    text = "".join(r.getMessage() for r in caplog.records if r.name == "dna.transport")
    assert "evil" in text
    assert "\n" not in text and "\x1b" not in text


async def test_an_ext_type_frame_is_a_protocol_error_not_a_ping(caplog: Any) -> None:
    b = make("b")
    async with started(b) as (addr_b,):
        async with raw(port_of(b)) as (reader, writer):
            peer = await handshake(reader, writer)
            peer.write(b"\x00\x00\x00\x03" + msgpack.packb(msgpack.ExtType(PING, b"")))
            with contextlib.suppress(AssertionError, ConnectionError):
                frame = await peer.read_frame()
                raise AssertionError(f"answered with {frame!r}")
        assert warned(caplog, "malformed frame")
        assert await make_and_call(addr_b) == 1


@pytest.mark.parametrize("frame", [[True, 0, "x"], [4.0]])
async def test_frame_kinds_must_be_exact(caplog: Any, frame: Any) -> None:
    b = make("b")
    async with started(b):
        async with raw(port_of(b)) as (reader, writer):
            peer = await handshake(reader, writer)
            peer.write(encode_frame(frame))
            assert await closed_by_peer(reader) < 1.0
        assert warned(caplog, "malformed frame")


async def test_a_frame_nested_a_thousand_deep_closes_with_a_clear_reason(caplog: Any) -> None:
    b = make("b")
    async with started(b) as (addr_b,):
        async with raw(port_of(b)) as (reader, writer):
            peer = await handshake(reader, writer)
            deep = b"\x91" * 1000 + b"\xc0"  # [[[...[nil]...]]], 1,000 arrays deep
            peer.write(len(deep).to_bytes(4, "big") + deep)
            assert await closed_by_peer(reader) < 1.0
        assert warned(caplog, "malformed frame")
        assert await make_and_call(addr_b) == 1

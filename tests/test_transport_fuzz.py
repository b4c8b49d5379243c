"""Bounded fuzzing (Hypothesis) of what the transport reads from strangers:
the frame decoder of both builds, the HELLO parser, and a real ``Connection``
fed arbitrary bytes before and after authentication. The longer run is
``bench/fuzz_transport.py`` (atheris)."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dna.errors import ProtocolError
from dna.transport import Transport
from dna.transport._auth import (
    MAX_HELLO,
    Hello,
    Sealer,
    build_hello,
    derive_keys,
    new_nonce,
    parse_hello,
)
from dna.transport._conn import CLOSED, HANDSHAKE, READY, Connection

SECRET = b"fuzz secret"
FIXTURE = HealthCheck.function_scoped_fixture  # the node is reusable: only its connections vary
C = importlib.import_module("dna._core.framing")
PY = importlib.import_module("dna._core.framing_py")

chunks = st.lists(st.binary(max_size=64), max_size=12)


def frame_bytes() -> st.SearchStrategy[bytes]:
    """Mostly well-framed msgpack (sometimes damaged), sometimes raw noise."""
    payload = st.one_of(
        st.binary(max_size=40),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8)
            | st.binary(max_size=8) | st.builds(msgpack.ExtType, st.integers(0, 127),
                                                st.binary(max_size=4)),
            lambda inner: st.lists(inner, max_size=4),
            max_leaves=10,
        ).map(lambda o: msgpack.packb(o, use_bin_type=True)),
    )
    return payload.map(lambda p: len(p).to_bytes(4, "big") + p) | st.binary(max_size=40)


def run(decoder: Any, parts: list[bytes]) -> list[Any]:
    out: list[Any] = []
    try:
        for part in parts:
            decoder.feed(part)
            out.extend(decoder)
    except ProtocolError as e:
        out.append(("ProtocolError", str(e)))
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(frame_bytes(), max_size=6), st.integers(0, 64), st.data())
def test_both_decoders_agree(frames: list[bytes], limit: int, data: st.DataObject) -> None:
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    parts = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert run(C.FrameDecoder(limit), parts) == run(PY.FrameDecoder(limit), parts)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600) | st.binary(max_size=40).map(
    lambda b: build_hello(True, new_nonce(), "n", "")[: len(b) % 60] + b))
def test_hello_parser_never_crashes(buf: bytes) -> None:
    try:
        parsed = parse_hello(buf)
    except ProtocolError:
        return
    if parsed is not None:
        hello, n = parsed
        assert n <= min(len(buf), MAX_HELLO)
        assert isinstance(hello, Hello) and hello.node_id


class Wire(asyncio.Transport):
    """A stand-in for the socket: records what the connection writes."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def abort(self) -> None:
        self.aborted = True

    close = abort

    def is_closing(self) -> bool:
        return self.aborted

    def get_extra_info(self, name: Any, default: Any = None) -> Any:
        return ("203.0.113.1", 4242) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0


@pytest.fixture
def node() -> Iterator[Transport]:
    """A real Transport bound to a loop that never runs (callbacks stay scheduled)."""
    loop = asyncio.new_event_loop()
    t = Transport("n", SECRET, on_request=lambda p, m: m, on_message=lambda p, m: None)
    t._loop = loop
    logging.getLogger("dna.transport").disabled = True  # thousands of refusals
    try:
        yield t
    finally:
        logging.getLogger("dna.transport").disabled = False
        loop.close()


def accept(t: Transport) -> tuple[Connection, Wire]:
    conn = Connection(t, True, None)
    wire = Wire()
    conn.connection_made(wire)
    return conn, wire


@settings(max_examples=300, deadline=None, suppress_health_check=[FIXTURE])
@given(st.booleans(), chunks)
def test_no_way_in_without_the_secret(node: Transport, hello_first: bool,
                                      parts: list[bytes]) -> None:
    conn, wire = accept(node)
    if hello_first:
        conn.data_received(build_hello(True, new_nonce(), "stranger", ""))
    for part in parts:
        conn.data_received(part)  # never raises: refusals close the connection
    assert conn.state in (HANDSHAKE, CLOSED)
    assert len(conn.inbuf) <= 1024
    assert (conn.state == CLOSED) == wire.aborted
    conn.drop("done")
    conn.connection_lost(None)  # what asyncio does once the socket is gone


@settings(max_examples=300, deadline=None, suppress_health_check=[FIXTURE])
@given(st.lists(frame_bytes(), max_size=6))
def test_any_frames_after_authentication(node: Transport, frames: list[bytes]) -> None:
    conn, wire = accept(node)
    peer = Hello(True, new_nonce(), "peer", "")
    conn.data_received(build_hello(*peer))
    keys = derive_keys(node._master, False, peer, conn.hello)
    conn.data_received(keys.proof_out)
    assert conn.state == READY
    sealer = Sealer(keys.mac_out)
    for frame in frames:
        conn.data_received(sealer.seal(frame))  # never raises
        assert conn.state in (READY, CLOSED)
        if conn.state == CLOSED:
            assert wire.aborted
            break
    conn.drop("done")
    conn.connection_lost(None)
    assert not node._all and not node._nonces  # nothing kept per connection

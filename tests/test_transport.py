"""The inter-node transport over real TCP on 127.0.0.1: transports talking to
each other in one process, and raw sockets playing bad or broken peers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from dna import errors
from dna._core import FrameDecoder, encode_frame
from dna.errors import ActorError, InterfaceError, NotOwner, PeerUnavailable, ProtocolError
from dna.transport import Transport
from dna.transport._auth import (
    Hello,
    Keys,
    Opener,
    Sealer,
    build_hello,
    check_proof,
    derive_keys,
    master_key,
    new_nonce,
    parse_hello,
)
from dna.transport._wire import CREDIT, PING, PONG, REPLY, error_from_wire

SECRET = b"cluster secret for the tests"
LOOPBACK = "127.0.0.1"


def echo(peer: str, msg: Any) -> Any:
    return [peer, msg]


def make(node_id: str, secret: bytes | None = SECRET, **kw: Any) -> Transport:
    kw.setdefault("on_request", echo)
    kw.setdefault("on_message", lambda peer, msg: None)
    return Transport(node_id, secret, **kw)


@contextlib.asynccontextmanager
async def started(*transports: Transport) -> AsyncIterator[list[str]]:
    """Starts each transport on 127.0.0.1 and yields their addresses; closes them all."""
    try:
        for t in transports:
            await t.start(LOOPBACK, 0)
        yield [t.address or "" for t in transports]
    finally:
        for t in transports:
            await t.close()


async def eventually(cond: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def warned(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(
        r.name == "dna.transport" and r.levelno == logging.WARNING and text in r.getMessage()
        for r in caplog.records
    )


@contextlib.asynccontextmanager
async def raw(
    port: int, ssl: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(LOOPBACK, port, ssl=ssl)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class RawPeer:
    """A raw client past the handshake: writes and reads frames in sealed records."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 keys: Keys, rest: bytes) -> None:
        self.reader, self.writer, self.keys = reader, writer, keys
        self.sealer = Sealer(keys.mac_out)
        self.opener = Opener(keys.mac_in, 1 << 24)
        self.decoder = FrameDecoder()
        self.rest = rest

    def write(self, payload: bytes) -> None:
        """Sends ``payload`` (whole frames, or anything) as our next record."""
        self.writer.write(self.sealer.seal(payload))

    async def read_frame(self, within: float = 2.0) -> Any:
        """The next frame other than a CREDIT grant."""
        while True:
            for frame in self.decoder:
                if frame[0] != CREDIT:
                    return frame
            data, self.rest = self.rest, b""
            data = data or await asyncio.wait_for(self.reader.read(65536), within)
            assert data, "closed by the peer"
            for payload in self.opener.feed(data):
                self.decoder.feed(payload)


async def handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes | None = SECRET
) -> RawPeer:
    """Authenticates a raw client as node "raw"."""
    own = Hello(secret is not None, new_nonce(), "raw", "")
    writer.write(build_hello(*own))
    buf = b""
    while (parsed := parse_hello(buf)) is None:
        buf += await reader.read(1024)
    peer, n = parsed
    buf = buf[n:]
    keys = derive_keys(master_key(secret), False, own, peer)
    writer.write(keys.proof_out)
    while len(buf) < 32:
        buf += await reader.read(1024)
    check_proof(keys, buf[:32])
    return RawPeer(reader, writer, keys, buf[32:])


async def closed_by_peer(reader: asyncio.StreamReader, within: float = 2.0) -> float:
    """Reads until EOF (or reset); returns how long it took."""
    t0 = time.monotonic()
    with contextlib.suppress(ConnectionError):
        while await asyncio.wait_for(reader.read(65536), within):
            pass
    return time.monotonic() - t0


def port_of(t: Transport) -> int:
    return int((t.address or "").rpartition(":")[2])


# ---------------------------------------------------------------- calls


async def test_request_reply_sync_and_async_handlers() -> None:
    async def slow_echo(peer: str, msg: Any) -> Any:
        await asyncio.sleep(0.01)
        return {"from": peer, "msg": msg}

    a, b = make("a"), make("b", on_request=slow_echo)
    async with started(a, b) as (addr_a, addr_b):
        assert await a.request(addr_b, [1, b"\x00", "x", None], 2.0) == {
            "from": "a", "msg": [1, b"\x00", "x", None],
        }
        assert await b.request(addr_a, {"k": 1.5}, 2.0) == ["b", {"k": 1.5}]
        # both directions rode the one connection a opened
        assert len(a._all) == 1 and len(b._all) == 1


async def test_handler_may_return_a_future() -> None:
    loop = asyncio.get_running_loop()

    def later(peer: str, msg: Any) -> asyncio.Future[Any]:
        fut = loop.create_future()
        loop.call_later(0.01, fut.set_result, msg * 2)
        return fut

    a, b = make("a"), make("b", on_request=later)
    async with started(a, b) as (_, addr_b):
        assert await a.request(addr_b, 21, 2.0) == 42


async def test_concurrent_first_requests_share_one_connect() -> None:
    a, b = make("a"), make("b")
    async with started(a, b) as (_, addr_b):
        replies = await asyncio.gather(*(a.request(addr_b, i, 5.0) for i in range(200)))
        assert replies == [["a", i] for i in range(200)]
        assert len(b._all) == 1


async def test_many_concurrent_requests_from_two_peers() -> None:
    a, b, c = make("a"), make("b"), make("c")
    async with started(a, b, c) as (addr_a, addr_b, _):
        calls = [a.request(addr_b, i, 10.0) for i in range(5000)]
        calls += [c.request(addr_b, i, 10.0) for i in range(5000)]
        calls += [c.request(addr_a, i, 10.0) for i in range(1000)]
        replies = await asyncio.gather(*calls)
        assert replies[:5000] == [["a", i] for i in range(5000)]
        assert replies[5000:10000] == [["c", i] for i in range(5000)]
        assert replies[10000:] == [["c", i] for i in range(1000)]


async def test_sends_and_requests_arrive_and_start_in_order() -> None:
    seen: list[int] = []
    started_async: list[int] = []

    def on_request(peer: str, msg: int) -> Any:
        seen.append(msg)
        if msg % 4 == 0:
            async def handler() -> int:
                started_async.append(msg)
                await asyncio.sleep(0)
                return msg
            return handler()
        return msg

    a = make("a")
    b = make("b", on_request=on_request, on_message=lambda peer, msg: seen.append(msg))
    async with started(a, b) as (_, addr_b):
        calls = []
        for i in range(10_000):
            if i % 2:
                a.send(addr_b, i)
            else:
                calls.append(asyncio.ensure_future(a.request(addr_b, i, 30.0)))
                await asyncio.sleep(0)  # the call is queued when its coroutine first runs
        assert await asyncio.gather(*calls) == list(range(0, 10_000, 2))
        await eventually(lambda: len(seen) == 10_000)
        assert seen == list(range(10_000))
        assert started_async == list(range(0, 10_000, 4))


async def test_frames_of_one_iteration_go_out_in_one_write() -> None:
    got: list[int] = []
    a, b = make("a"), make("b", on_message=lambda peer, msg: got.append(msg))
    async with started(a, b) as (_, addr_b):
        await a.request(addr_b, "connect", 2.0)
        (conn,) = a._all
        assert conn.transport is not None
        writes = 0
        real_write = conn.transport.write

        def counting_write(data: Any) -> None:
            nonlocal writes
            writes += 1
            real_write(data)

        conn.transport.write = counting_write  # type: ignore[method-assign]
        for i in range(1000):
            a.send(addr_b, i)
        await eventually(lambda: len(got) == 1000)
        assert got == list(range(1000)) and writes == 1


async def test_deadline_is_carried_to_the_receiver() -> None:
    b = make("b")
    seen: list[float] = []

    def on_request(peer: str, msg: Any) -> None:
        seen.append(b.deadline - asyncio.get_running_loop().time())

    b._on_request = on_request
    a = make("a")
    async with started(a, b) as (_, addr_b):
        await a.request(addr_b, "x", 3.0)
        assert 2.0 < seen[0] <= 3.0


# ---------------------------------------------------------------- errors


class AppError(errors.DNAError):
    pass


class Timeout(errors.DNAError):  # same name as a DNA class, not that class
    pass


async def test_remote_exceptions_are_mapped_by_whitelist() -> None:
    raises: dict[str, BaseException] = {
        "actor": ActorError("KeyError", "'k'"),
        "notowner": NotOwner("moved", owner="node-7"),
        "overloaded": errors.Overloaded("mailbox full"),
        "stale": errors.StaleEpoch("epoch 3 < 4"),
        "builtin": ValueError("bad value"),
        "app": AppError("custom"),
        "impostor": Timeout("not the real one"),
    }

    async def on_request(peer: str, msg: str) -> None:
        if msg == "async":
            raise ZeroDivisionError("division by zero")
        raise raises[msg]

    a, b = make("a"), make("b", on_request=on_request)
    async with started(a, b) as (_, addr_b):
        async def err(msg: str) -> BaseException:
            with pytest.raises(errors.DNAError) as info:
                await a.request(addr_b, msg, 2.0)
            return info.value

        e = await err("actor")
        assert type(e) is ActorError and (e.remote_type, e.remote_message) == ("KeyError", "'k'")
        e = await err("notowner")
        assert type(e) is NotOwner and e.owner == "node-7" and str(e) == "moved"
        assert type(await err("overloaded")) is errors.Overloaded
        assert type(await err("stale")) is errors.StaleEpoch
        for name, typ, text in [
            ("builtin", "ValueError", "bad value"),
            ("app", "AppError", "custom"),
            ("impostor", "Timeout", "not the real one"),
            ("async", "ZeroDivisionError", "division by zero"),
        ]:
            e = await err(name)
            assert type(e) is ActorError, name
            assert (e.remote_type, e.remote_message) == (typ, text)


def test_error_frames_never_name_arbitrary_classes() -> None:
    for name in ("os.system", "builtins.eval", "Exception", "SystemExit", "DNAError.__class__", 7):
        e = error_from_wire(name, "m", None)
        assert type(e) is ActorError
    e = error_from_wire("Timeout", {"not": "a string"}, None)
    assert type(e) is errors.Timeout


async def test_timeout_then_late_reply_is_dropped_silently() -> None:
    answered = asyncio.Event()

    async def slow(peer: str, msg: Any) -> Any:
        if msg == 1:
            await asyncio.sleep(0.2)
            answered.set()
        return msg

    a, b = make("a"), make("b", on_request=slow)
    async with started(a, b) as (_, addr_b):
        t0 = time.monotonic()
        with pytest.raises(errors.Timeout):
            await a.request(addr_b, 1, 0.05)
        assert time.monotonic() - t0 < 1.0
        await answered.wait()  # b answers call 1 late: its reply goes out before reply 2
        assert await a.request(addr_b, 2, 1.0) == 2


async def test_peer_closing_mid_request_raises_peer_unavailable() -> None:
    loop = asyncio.get_running_loop()
    arrived: list[Any] = []
    a, b = make("a"), make("b", on_request=lambda peer, msg: arrived.append(msg)
                          or loop.create_future())
    async with started(a) as (addr_a,):
        await b.start(LOOPBACK, 0)
        addr_b = b.address or ""
        calls = [asyncio.ensure_future(a.request(addr_b, i, 5.0)) for i in range(10)]
        await eventually(lambda: len(arrived) == 10)  # every call is in b's hands
        await b.close()
        for call in calls:
            with pytest.raises(PeerUnavailable):
                await call
            assert isinstance(call.exception(), errors.Retryable)
        with pytest.raises(PeerUnavailable):  # nobody listens there any more
            await a.request(addr_b, "again", 2.0)
        assert await make_and_call(addr_a) == 1  # a itself still serves


async def test_close_fails_calls_in_flight_and_refuses_new_ones() -> None:
    loop = asyncio.get_running_loop()
    arrived: list[Any] = []
    a, b = make("a"), make("b", on_request=lambda peer, msg: arrived.append(msg)
                          or loop.create_future())
    async with started(a, b) as (_, addr_b):
        call = asyncio.ensure_future(a.request(addr_b, 1, 5.0))
        await eventually(lambda: arrived == [1])  # in flight: b has it, no answer yet
        await a.close()
        with pytest.raises(PeerUnavailable):
            await call
        with pytest.raises(InterfaceError):
            await a.request(addr_b, 2, 1.0)


async def test_unsendable_messages_are_refused_locally() -> None:
    a, b = make("a", max_frame_size=4096), make("b", max_frame_size=4096)
    async with started(a, b) as (_, addr_b):
        with pytest.raises(InterfaceError):
            await a.request(addr_b, object(), 2.0)
        with pytest.raises(InterfaceError):
            await a.request(addr_b, b"x" * 10_000, 2.0)
        assert await a.request(addr_b, "still fine", 2.0) == ["a", "still fine"]
        b._on_request = lambda peer, msg: object()
        with pytest.raises(InterfaceError):
            await a.request(addr_b, "reply cannot be sent", 2.0)


# ---------------------------------------------------------------- authentication


@pytest.mark.parametrize(("secret_a", "secret_b"), [
    (b"one secret", b"another secret"),
    (None, SECRET),
    (SECRET, None),
])
async def test_wrong_secret_is_rejected_both_ways(
    caplog: pytest.LogCaptureFixture, secret_a: bytes | None, secret_b: bytes | None
) -> None:
    a, b, good = make("a", secret_a), make("b", secret_b), make("good", secret_b)
    async with started(a, b, good) as (addr_a, addr_b, _):
        with pytest.raises((ProtocolError, PeerUnavailable)):
            await a.request(addr_b, "hi", 2.0)
        with pytest.raises((ProtocolError, PeerUnavailable)):
            await b.request(addr_a, "hi", 2.0)
        await eventually(
            lambda: warned(caplog, "connection from") and warned(caplog, "connection to")
        )
        assert await good.request(addr_b, "hi", 2.0) == ["good", "hi"]


async def test_wrong_secret_error_is_not_retryable() -> None:
    a, b = make("a", b"one"), make("b", b"two")
    async with started(a, b) as (_, addr_b):
        with pytest.raises(ProtocolError, match="authentication failed"):
            await a.request(addr_b, "hi", 2.0)


async def test_without_secret_only_loopback_unless_insecure() -> None:
    t = make("a", None)
    with pytest.raises(InterfaceError, match="secret"):
        await t.start("0.0.0.0", 0)
    await t.close()
    t = make("a", None)
    host, port = await t.start("0.0.0.0", 0, insecure=True)
    assert port > 0
    await t.close()
    for host in ("127.0.0.1", "localhost"):
        t = make("a", None)
        assert (await t.start(host, 0))[1] > 0
        await t.close()
    t = make("a")  # with a secret, any address
    await t.start("0.0.0.0", 0)
    await t.close()


# ---------------------------------------------------------------- bad peers


async def test_garbage_before_auth_is_closed_at_once(caplog: pytest.LogCaptureFixture) -> None:
    b, good = make("b"), make("good")
    async with started(b, good) as (addr_b, _):
        async with raw(port_of(b)) as (reader, writer):
            writer.write(b"\xff\xff\xff\xff" + b"junk" * 100)
            assert await closed_by_peer(reader) < 1.0
        assert warned(caplog, "bad handshake magic")
        assert await good.request(addr_b, 1, 2.0) == ["good", 1]


async def test_flood_before_auth_is_not_buffered(caplog: pytest.LogCaptureFixture) -> None:
    b = make("b")
    async with started(b) as (addr_b,):
        async with raw(port_of(b)) as (reader, writer):
            hello = build_hello(True, new_nonce(), "flooder", "")
            writer.write(hello[:-1])  # almost a HELLO, then 4 MiB of junk
            with contextlib.suppress(ConnectionError):
                for _ in range(64):
                    writer.write(b"\x00" * 65536)
                    await writer.drain()
            assert await closed_by_peer(reader) < 1.0
        await eventually(lambda: warned(caplog, "closing connection from"))
        assert all(len(c.inbuf) <= 1024 for c in b._all)
        assert await make_and_call(addr_b) == 1


async def make_and_call(addr: str) -> Any:
    c = make("c")
    try:
        return (await c.request(addr, 1, 2.0))[1]
    finally:
        await c.close()


async def test_half_open_client_is_closed_after_handshake_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = make("b", handshake_timeout=0.2)
    async with started(b) as (addr_b,):
        async with raw(port_of(b)) as (reader, _):
            assert 0.1 < await closed_by_peer(reader) < 2.0
        async with raw(port_of(b)) as (reader, writer):
            writer.write(build_hello(True, new_nonce(), "slow", "")[:20])  # and stops
            assert 0.1 < await closed_by_peer(reader) < 2.0
        assert warned(caplog, "handshake not completed")
        assert await make_and_call(addr_b) == 1


async def test_oversize_frame_after_auth_is_closed(caplog: pytest.LogCaptureFixture) -> None:
    b = make("b", max_frame_size=1024)
    async with started(b) as (addr_b,):
        async with raw(port_of(b)) as (reader, writer):
            peer = await handshake(reader, writer)
            peer.write((2048).to_bytes(4, "big") + b"\x00" * 100)  # a frame over the limit
            assert await closed_by_peer(reader) < 1.0
        async with raw(port_of(b)) as (reader, writer):
            await handshake(reader, writer)
            writer.write((2048).to_bytes(4, "big") + b"\x00" * 100)  # a record over it
            assert await closed_by_peer(reader) < 1.0
        await eventually(lambda: warned(caplog, "connection from"))
        assert await make_and_call(addr_b) == 1


@pytest.mark.parametrize("payload", [
    b"\x00\x00\x00\x02\xc1\xc1",  # a frame whose msgpack is invalid
    encode_frame(42),  # valid msgpack that is no frame
    encode_frame([99, 1]),  # unknown kind
    encode_frame([0, "id", 1.0, "msg"]),  # request id of the wrong type
])
async def test_garbage_frame_after_auth_is_closed(
    caplog: pytest.LogCaptureFixture, payload: bytes
) -> None:
    b = make("b")
    async with started(b) as (addr_b,):
        async with raw(port_of(b)) as (reader, writer):
            peer = await handshake(reader, writer)
            peer.write(payload)
            assert await closed_by_peer(reader) < 1.0
        await eventually(lambda: warned(caplog, "connection from"))
        assert await make_and_call(addr_b) == 1


async def test_reply_to_unknown_request_is_ignored() -> None:
    b = make("b")
    async with started(b):
        async with raw(port_of(b)) as (reader, writer):
            peer = await handshake(reader, writer)
            peer.write(encode_frame([REPLY, 12345, "who asked?"]) + encode_frame([PING]))
            assert await peer.read_frame() == [PONG]


async def test_idle_connections_are_kept_alive_or_closed(caplog: pytest.LogCaptureFixture) -> None:
    a, b = make("a", idle_timeout=0.5), make("b", idle_timeout=0.5)
    async with started(a, b) as (_, addr_b):
        await a.request(addr_b, 1, 2.0)
        (conn,) = a._all
        await asyncio.sleep(1.5)  # idle, but ping/pong keeps it
        assert a._all == {conn} and await a.request(addr_b, 2, 2.0) == ["a", 2]
        async with raw(port_of(b)) as (reader, writer):
            await handshake(reader, writer)  # authenticated, then never answers a ping
            assert 0.4 < await closed_by_peer(reader, within=5.0) < 3.0
        assert warned(caplog, "no traffic")


def test_bad_constructor_arguments_are_refused() -> None:
    with pytest.raises(InterfaceError):
        make("a", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        make("x" * 300)
    with pytest.raises(ValueError):
        make("")
    with pytest.raises(ValueError, match="max_frame_size"):
        make("a", max_frame_size=2**32)


class Exploding:
    """A request_to target whose settling raises (say, the node is stopping)."""

    def __init__(self) -> None:
        self.timer: Any = None
        self.settled = False

    def done(self) -> bool:
        return self.settled

    def set_result(self, value: Any) -> None:
        self.settled = True
        raise RuntimeError("the node is not running")

    set_exception = set_result


async def test_a_target_that_raises_when_settled_does_not_tear_down_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    a = make("a")
    b = make("b", on_request=lambda peer, msg: loop.create_future() if msg == "slow" else msg)
    async with started(a, b) as (_, addr_b):
        slow = asyncio.ensure_future(a.request(addr_b, "slow", 1.0))  # in flight meanwhile
        target = Exploding()
        a.request_to(addr_b, "boom", 2.0, target)
        await eventually(lambda: target.settled)
        target.timer.cancel()
        assert await a.request(addr_b, "after", 2.0) == "after"
        assert len(a._all) == 1  # the same connection carried on
        with pytest.raises(errors.Timeout):  # not PeerUnavailable: the link stayed up
            await slow
    assert any("not running" in r.getMessage() or r.exc_info for r in caplog.records
               if r.name == "dna.transport")


async def test_frames_for_a_connection_already_closing_are_not_written(
        caplog: pytest.LogCaptureFixture) -> None:
    """Between a reset seen by asyncio (it closes the transport) and our
    connection_lost, frames are dropped, not written: asyncio warned "socket.send()
    raised exception." for each write past the fifth (hundreds of lines per failover
    with 2,000 calls in flight to the killed node)."""
    a, b = make("a"), make("b")
    async with started(a, b) as (_addr_a, addr_b):
        assert await a.request(addr_b, 1, 5.0) == ["a", 1]  # echo: the link is up
        conn = a._conns[addr_b]
        call = asyncio.ensure_future(a.request(addr_b, "in flight", 5.0))
        await asyncio.sleep(0)
        assert conn.transport is not None
        conn.transport.abort()  # what asyncio does on ECONNRESET / EPIPE
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for i in range(20):  # each flushed at once, as calls to an idle route are
                a.send(addr_b, i)
                a.flush_now(addr_b)
            with pytest.raises(PeerUnavailable):
                await call
        assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text

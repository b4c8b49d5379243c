"""One peer connection of the transport: handshake, frame dispatch, coalesced writes.

Private to ``dna.transport``; a ``Connection`` reads its owner's settings and
tells it when it authenticates or closes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import deque
from typing import Any, Protocol

from .._core import encode_frames
from ..errors import PeerUnavailable, ProtocolError
from ._auth import (
    Hello,
    Keys,
    Opener,
    Sealer,
    build_hello,
    new_nonce,
)
from ._calls import CallCredit, admit_waiting, first_estimate, note_flushed, request_received
from ._handshake import CLOSED, DIALING, HANDSHAKE, READY, handshake_received
from ._limits import Admission, Throttled
from ._outgoing import encode_one_by_one
from ._wire import (
    CREDIT,
    ERROR,
    INITIAL_CREDIT,
    MESSAGE,
    PING,
    PONG,
    REPLY,
    REQUEST,
    error_from_wire,
    printable,
    summary,
)

__all__ = ["CLOSED", "DIALING", "HANDSHAKE", "READY", "Admission", "Connection",
           "Throttled"]

log = logging.getLogger("dna.transport")


class Owner(Protocol):
    """What a connection reads of the transport that owns it (``Transport`` is one)."""

    node_id: str
    deadline: float
    peak_unsent: int
    source: Connection | CallCredit | None
    preauth_log: Throttled
    _advertise: str
    _all: set[Connection]
    _closed: bool
    _conns: dict[str, Connection]
    _grant_batch: int
    _handshake_timeout: float
    _loop: asyncio.AbstractEventLoop
    _manual_release: bool
    _master: bytes
    _max_frame_size: int
    _max_unsent: int
    _nonces: set[bytes]
    _on_call: Any
    _on_message: Any
    _on_received: Any
    _on_request: Any
    _secret: bytes | None
    _split: Any
    _tasks: set[asyncio.Future[Any]]
    _window: int

    def _authenticated(self, conn: Connection, peer_address: str) -> None: ...
    def _forget(self, conn: Connection) -> None: ...
    def release(self, adm: Admission) -> None: ...


class Connection(asyncio.Protocol):
    """One TCP connection to or from a peer: handshake, then frames both ways."""

    def __init__(
        self, owner: Owner, server: bool, address: str | None,
        admission: Admission | None = None,
    ) -> None:
        self.owner = owner  # the Transport this connection belongs to
        self.admission = admission  # the slot an accepted connection holds until it authenticates
        if admission is not None:
            admission.conn = self
        self.loop = owner._loop  # the loop everything runs on
        self.server = server  # True when the peer dialled us
        self.address = address  # key in owner._conns (the peer's listen address) or None
        self.state = DIALING if not server else HANDSHAKE
        self.transport: asyncio.Transport | None = None  # set in connection_made
        self.peer_id = ""  # the peer's node id, known after its HELLO
        self.hello = Hello(owner._secret is not None, new_nonce(), owner.node_id,
                           owner._advertise)  # what we say about ourselves
        owner._nonces.add(self.hello.nonce)  # a peer echoing it back is refused
        self.peer_hello: Hello | None = None  # what the peer said, before it proved it
        self.keys: Keys | None = None  # this connection's keys, once the peer's HELLO is in
        self.inbuf = bytearray()  # unauthenticated bytes, at most MAX_PREAUTH_BUFFER
        self.opener: Opener | None = None  # verifies incoming records, once authenticated
        self.decoder: Any = None  # FrameDecoder, created once the peer is authenticated
        self.sealer: Sealer | None = None  # MACs our records, once authenticated
        self.out: list[Any] = []  # frames waiting for the next flush (kept until READY)
        self.flush_handle: asyncio.Handle | None = None  # the scheduled flush, if any
        self.receiving = False  # inside data_received: its end flushes, no call_soon needed
        self.hs_timer: asyncio.TimerHandle | None = None  # handshake deadline
        self.pending: dict[int, asyncio.Future[Any]] = {}  # our calls waiting for a reply
        self.next_rid = 0  # id of our next call on this connection
        self.last_rx = self.loop.time()  # when the peer last sent anything
        self.watch_since = 0.0  # when calls became pending (liveness counts from there)
        self.last_ping = 0.0  # when the liveness check last pinged
        self.last_unsent = 0  # bytes asyncio held unsent at the last liveness check
        self.last_drain = 0.0  # when that amount last went down (the peer reads)
        self.close_error: tuple[type[Exception], str] | None = None  # what pending calls get
        self.closed: asyncio.Future[None] = self.loop.create_future()  # set once gone
        self.write_paused = False  # the socket's buffer is over its high-water mark
        self.drain_waiters: list[asyncio.Future[None]] = []  # senders waiting for room
        self.credit = INITIAL_CREDIT  # items we may still send before the peer grants more
        self.call_credit = INITIAL_CREDIT  # calls we may still send before more are granted
        # frames waiting for credit, in order: (frame, weight, queued at, key)
        self.held: deque[tuple[list[Any], int, float, Any]] = deque()
        self.held_keys: dict[Any, int] = {}  # held frames per sender key (a route)
        self.allowed_calls = owner._window  # calls the peer may still send us
        self.call_grant_due = 0  # calls released and not yet granted back
        self.call_source = CallCredit(self)  # what a handler releases a call's credit through
        self.allowed = owner._window  # items the peer may still send us (it may overdraw once)
        self.grant_due = 0  # items released and not yet granted back to the peer
        self.grant_batch = owner._grant_batch  # released items sent back in one CREDIT
        self.manual = owner._manual_release  # items wait for release(), else go at delivery
        self.running = 0  # the peer's calls started and not answered or not flushed yet
        self.reply_estimate = first_estimate(owner._max_unsent)  # bytes a reply is taken to need
        self.replies = 0  # replies queued since the last flush
        # the peer's frames that came while a call could not start: (rid or None for
        # one-way, seconds left or weight, msg, arrived at), in arrival order
        self.waiting: deque[tuple[int | None, float, Any, float]] = deque()
        self.peak_unsent = 0  # most bytes seen unsent to the peer (a flush while paused)

    def describe(self) -> str:
        """Which connection this is, for the log (peer-supplied names escaped)."""
        peer = f" ({printable(self.peer_id)})" if self.peer_id else ""
        if self.server or self.address is None:
            name = "?"
            if self.transport is not None:
                name = str(self.transport.get_extra_info("peername"))
            return f"connection from {name}{peer}"
        return f"connection to {printable(self.address)}{peer}"

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.owner._all.add(self)
        if self.owner._closed or self.state == CLOSED:
            transport.abort()
            return
        self.state = HANDSHAKE
        self.hs_timer = self.loop.call_later(self.owner._handshake_timeout, self._hs_expired)
        h = self.hello
        transport.write(build_hello(h.has_secret, h.nonce, h.node_id, h.address))

    def data_received(self, data: bytes) -> None:
        self.last_rx = self.loop.time()
        if self.state == READY:
            self._frames_received(data)
        elif self.state == HANDSHAKE:
            handshake_received(self, data)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writers()
        if self.waiting:
            admit_waiting(self)

    def _wake_writers(self) -> None:
        waiters, self.drain_waiters = self.drain_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state != CLOSED:
            reason = f": {exc}" if exc else ""
            # an unauthenticated peer going away is not news (and could flood the log)
            level = logging.INFO if self.state == READY or not self.server else logging.DEBUG
            log.log(level, "%s lost%s", self.describe(), reason)
            self._set_closed(PeerUnavailable, f"{self.describe()} lost{reason}")
        self.owner._all.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)

    # ------------------------------------------------------------ handshake

    def _hs_expired(self) -> None:
        self.hs_timer = None
        if self.state == HANDSHAKE:
            self.fail(
                f"handshake not completed within {self.owner._handshake_timeout} s",
                PeerUnavailable,
            )

    # ------------------------------------------------------------ frames in

    def _frames_received(self, data: bytes) -> None:
        self.receiving = True
        # No cyclic GC while a chunk's frames are decoded and handed on: a frame of
        # casts is thousands of lists that die together right after, and a collection
        # in between would trace them all and age them into the old generations
        # (full collections then trace the whole heap: 2 us a remote cast, measured).
        # msgpack's own advice for large messages; the previous state is restored.
        collecting = gc.isenabled()
        if collecting:
            gc.disable()
        try:
            assert self.opener is not None
            decoder = self.decoder
            for payload in self.opener.feed(data):  # nothing is decoded before its MAC checks
                decoder.feed(payload)
            for frame in decoder:
                self._dispatch(frame)
                if self.state != READY:
                    return
        except ProtocolError as e:
            self.fail(str(e), PeerUnavailable)
            return
        finally:
            self.receiving = False
            if collecting:
                gc.enable()
        if self.owner._on_received is not None:
            self.owner._on_received()
        if self.out:
            self.flush()

    def _dispatch(self, frame: Any) -> None:
        try:
            # exact types: an ExtType (a tuple), True or 4.0 must not pass for a kind
            if type(frame) is not list or not frame or type(kind := frame[0]) is not int:
                raise TypeError
            if kind == REQUEST:
                _, rid, left, msg = frame
                if type(rid) is not int or not isinstance(left, (int, float)):
                    raise TypeError
                request_received(self, rid, left, msg)
            elif kind == REPLY:
                _, rid, value = frame
                self._settle(rid, value, None)
            elif kind == ERROR:
                _, rid, name, message, extra = frame
                self._settle(rid, None, error_from_wire(name, message, extra))
            elif kind == MESSAGE:
                if len(frame) == 2:
                    msg = frame[1]
                    weight = 1
                else:
                    _, msg, weight = frame
                    if type(weight) is not int or weight < 1:
                        raise TypeError
                self._message_received(msg, weight)
            elif kind == CREDIT:  # [CREDIT, n] for one-way items, [CREDIT, n, 1] for calls
                n = frame[1]
                calls = len(frame) == 3
                if type(n) is not int or n < 1 or len(frame) > 3 or (calls and frame[2] != 1):
                    raise TypeError
                self._credit_received(n, calls)
            elif kind == PING:
                self.queue([PONG])
            elif kind != PONG:
                raise TypeError
        except (TypeError, ValueError, IndexError, KeyError):
            raise ProtocolError(f"malformed frame {summary(frame)}") from None

    def _settle(self, rid: Any, value: Any, exc: BaseException | None) -> None:
        fut = self.pending.pop(rid, None)
        if fut is None:
            log.debug("%s: answer to unknown or expired call %r", self.describe(), rid)
            return
        try:
            if fut.done():
                return
            if exc is None:
                fut.set_result(value)
            else:
                fut.set_exception(exc)
        except Exception:  # a request_to target's own failure: never the connection's
            log.exception("%s: settling call %r raised", self.describe(), rid)

    def _take(self, weight: int) -> None:
        # only with manual release: otherwise every item is released as it is delivered
        if self.allowed <= 0:
            raise ProtocolError(f"the peer sent beyond its credit ({self.owner._window} items)")
        self.allowed -= weight

    def _take_call(self) -> None:
        if self.allowed_calls <= 0:
            raise ProtocolError(f"the peer sent beyond its call credit ({self.owner._window})")
        self.allowed_calls -= 1

    def _message_received(self, msg: Any, weight: int) -> None:
        if self.manual:
            self._take(weight)
        if self.waiting:  # behind a call that could not start: order kept
            self.waiting.append((None, weight, msg, 0.0))
            return
        self._deliver(msg, weight)

    def _deliver(self, msg: Any, weight: int) -> None:
        owner = self.owner
        if self.manual:
            owner.source = self
        try:
            owner._on_message(self.peer_id, msg)
        except Exception:
            log.exception("on_message raised for a message from %s", printable(self.peer_id))
        if not self.manual:
            due = self.grant_due + weight  # release() inlined: this is the hot path
            if due >= self.grant_batch:
                self.grant_due = 0
                self.queue([CREDIT, due])
            else:
                self.grant_due = due

    def release(self, n: int = 1) -> None:
        """Gives ``n`` items of credit back to the peer (they left our buffers).

        A no-op once the connection is closed. See ``Transport.source``.
        """
        if self.state != READY:
            return
        self.allowed += n
        due = self.grant_due + n
        if due >= self.grant_batch:
            self.grant_due = 0
            self.queue([CREDIT, due])
        else:
            self.grant_due = due

    def release_calls(self, n: int) -> None:
        """Gives ``n`` calls of credit back to the peer (see ``release``)."""
        if self.state != READY:
            return
        self.allowed_calls += n
        due = self.call_grant_due + n
        if due >= self.grant_batch:
            self.call_grant_due = 0
            self.queue([CREDIT, due, 1])
        else:
            self.call_grant_due = due

    def _credit_received(self, n: int, calls: bool) -> None:
        if calls:
            self.call_credit += n
        else:
            self.credit += n
        held = self.held
        now = self.loop.time()
        moved = False
        while held:
            frame, weight, queued, key = held[0]
            if (self.call_credit if frame[0] == REQUEST else self.credit) <= 0:
                break  # in order: what follows waits too
            held.popleft()
            moved = True
            left = self.held_keys[key] - 1
            if left:
                self.held_keys[key] = left
            else:
                del self.held_keys[key]
            if frame[0] == REQUEST:
                frame[2] -= now - queued  # seconds left: it waited here
                if frame[2] <= 0:
                    continue  # its caller has had its Timeout already
                self.call_credit -= 1
            else:
                self.credit -= weight
            self.out.append(frame)
        if moved and not self.write_paused:
            self._wake_writers()  # each waiter checks whether its own frames went

    def send_counted(self, frame: list[Any], weight: int, key: Any = None) -> None:
        """Queue a REQUEST/MESSAGE ``frame`` of ``weight`` items, or hold it (in order)
        until the peer grants credit. A call with a ``key`` (its route) no held frame
        has goes ahead of the held frames of other keys: calls have credit of their
        own, and order holds per key."""
        if frame[0] == REQUEST:
            go = self.call_credit > 0 and (
                not self.held or (key is not None and key not in self.held_keys))
            if go:
                self.call_credit -= 1
        else:
            go = self.credit > 0 and not self.held
            if go:
                self.credit -= weight
        if go:
            self.out.append(frame)  # queue() inlined
            if self.flush_handle is None and self.state == READY and not self.receiving:
                self.flush_handle = self.loop.call_soon(self.flush)
        else:
            self.held.append((frame, weight, self.loop.time(), key))
            self.held_keys[key] = self.held_keys.get(key, 0) + 1

    def congested(self, key: Any = None) -> bool:
        """Frames of ``key`` (of any key when None) wait for credit, or the socket is full."""
        return self.write_paused or (bool(self.held) if key is None else key in self.held_keys)

    # ------------------------------------------------------------ frames out

    def queue(self, frame: list[Any]) -> None:
        """Send ``frame`` with the next flush (at the latest on the next loop iteration)."""
        self.out.append(frame)
        if self.flush_handle is None and self.state == READY and not self.receiving:
            self.flush_handle = self.loop.call_soon(self.flush)

    def new_call(self, fut: asyncio.Future[Any]) -> int:
        if not self.pending:
            self.watch_since = self.loop.time()
        rid = self.next_rid
        self.next_rid = rid + 1
        self.pending[rid] = fut
        return rid

    def silent_for(self, now: float) -> float:
        """Seconds without a sign of life from the peer while calls were pending."""
        unsent = self.transport.get_write_buffer_size() if self.transport is not None else 0
        if unsent < self.last_unsent:
            self.last_drain = now
        self.last_unsent = unsent
        return now - max(self.last_rx, self.watch_since, self.last_drain)

    def flush(self) -> None:
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None
        out = self.out
        if not out or self.state != READY:
            return
        self.out = []
        assert self.transport is not None and self.sealer is not None
        if self.transport.is_closing():  # reset or aborted: connection_lost is on its way
            return  # (and fails the calls); asyncio would warn for every write from here
        try:
            data = encode_frames(out)
        except Exception:
            data = b""
        if 0 < len(data) <= self.owner._max_frame_size:
            self.transport.write(self.sealer.seal(data))  # one MAC per flush
        else:
            data = b"".join([self.sealer.seal(r) for r in encode_one_by_one(self, out)])
            self.transport.write(data)
        if self.write_paused:
            self._check_unsent()
        if self.replies:
            note_flushed(self, len(data))
            if self.waiting:
                admit_waiting(self)

    def _check_unsent(self) -> None:
        assert self.transport is not None
        unsent = self.transport.get_write_buffer_size()
        if unsent > self.peak_unsent:
            self.peak_unsent = unsent
            self.owner.peak_unsent = max(self.owner.peak_unsent, unsent)
        if unsent > self.owner._max_unsent:
            self.fail(f"the peer does not read: {unsent} bytes unsent, over max_unsent "
                      f"({self.owner._max_unsent})", PeerUnavailable)

    # ------------------------------------------------------------ closing

    def fail(self, reason: str, error: type[Exception]) -> None:
        """Close at once because of the peer; pending calls raise ``error``."""
        if self.state == CLOSED:
            return
        reason = printable(reason)
        if self.server and self.state != READY:  # anyone can make us say this: throttled
            self.owner.preauth_log.warning("closing %s: %s", self.describe(), reason)
        else:
            log.warning("closing %s: %s", self.describe(), reason)
        self.drop(reason, error)

    def drop(self, reason: str, error: type[Exception] = PeerUnavailable) -> None:
        """Close at once without a word in the log; pending calls raise ``error``."""
        if self.state == CLOSED:
            return
        self._set_closed(error, f"{self.describe()} closed: {reason}")
        if self.transport is not None:
            self.transport.abort()

    def close(self, reason: str) -> None:
        """Close gracefully (queued frames are still written); pending calls fail."""
        if self.state == CLOSED:
            return
        if self.state == READY and self.out:
            self.flush()
        self._set_closed(PeerUnavailable, f"{self.describe()} closed: {reason}")
        if self.transport is not None:
            self.transport.close()

    def dial_failed(self, reason: str) -> None:
        if self.state != DIALING:
            return
        log.info("cannot connect to %s: %s", printable(self.address or ""), reason)
        self._set_closed(PeerUnavailable, f"cannot connect to {self.address}: {reason}")

    def _release(self) -> None:
        if self.admission is not None:
            self.owner.release(self.admission)
            self.admission = None

    def _set_closed(self, error: type[Exception], message: str) -> None:
        self.state = CLOSED
        self._release()
        self.owner._nonces.discard(self.hello.nonce)
        self.close_error = (error, message)
        for handle in (self.hs_timer, self.flush_handle):
            if handle is not None:
                handle.cancel()
        self.hs_timer = self.flush_handle = None
        self.out = []
        self.held.clear()
        self.held_keys.clear()
        self.waiting.clear()
        self.owner._forget(self)
        if self.transport is None and not self.closed.done():
            self.closed.set_result(None)  # never had a socket: nothing to wait for
        self._wake_writers()  # they find the connection gone
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error(message))

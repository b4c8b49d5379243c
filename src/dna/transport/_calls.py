"""A peer's calls on one connection: admitted while their replies fit in
``max_unsent``, answered through ``Reply``.

A call is admitted (its handler started) only while the connection's unsent
bytes plus one ``reply_estimate`` per call already running fit in the
owner's ``max_unsent``; a call that does not fit waits here, in arrival
order, with every frame of the peer's behind it (casts too, so send order
holds), until replies are written out or the peer reads. What waits is
bounded by the peer's credit. Replies are never held, so a handler awaiting
an answer on this connection cannot deadlock it. The estimate starts at
``max_unsent / 16`` (at most 16 calls before the first replies are seen) and
follows the replies written: it jumps to a bigger reply at once and halves
per flush towards smaller ones.

Private to ``dna.transport``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from ._handshake import READY
from ._wire import REPLY, error_to_wire

if TYPE_CHECKING:
    from ._conn import Connection

__all__ = [
    "MIN_ESTIMATE", "Answer", "CallCredit", "Reply", "admit_waiting", "admits", "answer",
    "first_estimate", "note_flushed", "on_request_adapter", "request_received",
]

log = logging.getLogger("dna.transport")

MIN_ESTIMATE = 64  # bytes: the least a reply is taken to need
_START_CALLS = 16  # calls admitted before any reply size is known


def first_estimate(max_unsent: int) -> int:
    """Bytes a reply is taken to need before any reply was written."""
    return max(MIN_ESTIMATE, max_unsent // _START_CALLS)


def admits(conn: Connection) -> bool:
    """True when one more call of the peer may start on ``conn``."""
    if conn.running == 0 and not conn.write_paused:
        return True
    transport = conn.transport
    unsent = transport.get_write_buffer_size() if transport is not None else 0
    return unsent + (conn.running + 1) * conn.reply_estimate <= conn.owner._max_unsent


def note_flushed(conn: Connection, size: int) -> None:
    """``size`` bytes carrying ``conn.replies`` replies were written: follow their size."""
    per_reply = size // conn.replies
    conn.running -= conn.replies
    conn.replies = 0
    est = conn.reply_estimate
    conn.reply_estimate = per_reply if per_reply >= est else max(per_reply, est // 2, MIN_ESTIMATE)


def request_received(conn: Connection, rid: int, left: float, msg: Any) -> None:
    """A call from the peer: started now, or queued until its reply fits."""
    if conn.manual:
        conn._take_call()
    if conn.waiting or not (
        (not conn.write_paused and (conn.running + 1) * conn.reply_estimate
         <= conn.owner._max_unsent) or admits(conn)
    ):  # its reply might not fit in max_unsent: it waits for earlier ones to go
        conn.waiting.append((rid, left, msg, conn.loop.time()))
        return
    _start_call(conn, rid, left, msg)


def admit_waiting(conn: Connection) -> None:
    """Starts the waiting calls (and delivers the casts behind them) that now fit."""
    waiting = conn.waiting
    while waiting and conn.state == READY:
        rid, left, msg, arrived = waiting[0]
        if rid is None:
            waiting.popleft()
            conn._deliver(msg, int(left))
        elif admits(conn):
            waiting.popleft()
            _start_call(conn, rid, left - (conn.loop.time() - arrived), msg)
        else:
            return


def _start_call(conn: Connection, rid: int, left: float, msg: Any) -> None:
    """Runs the owner's handler for the call (``on_call``; ``on_request`` goes through it)."""
    if left <= 0:
        log.debug("%s: call %d arrived past its deadline", conn.describe(), rid)
        conn.release_calls(1)  # nobody else will
        return
    owner = conn.owner
    deadline = conn.loop.time() + left
    owner.deadline = deadline
    if conn.manual:
        owner.source = conn.call_source
    else:
        conn.release_calls(1)
    conn.running += 1
    reply = Reply(conn, rid, deadline)
    try:
        owner._on_call(conn.peer_id, msg, reply)
    except Exception as e:
        reply.set_exception(e)


def answer(conn: Connection, rid: int, deadline: float, frame: list[Any]) -> None:
    """Queue the REPLY/ERROR ``frame`` of the peer's call ``rid`` (once per call)."""
    if conn.state != READY:
        return  # the caller's connection is gone: nobody to answer
    if conn.loop.time() > deadline:
        log.debug("%s: reply to call %d ready past its deadline", conn.describe(), rid)
        conn.running -= 1
        if conn.waiting:
            conn.loop.call_soon(admit_waiting, conn)
        return
    conn.replies += 1  # it stays running until the flush writes it
    if conn.replies >= conn.running and not conn.receiving:
        # no other call of the peer runs here (a lone call, or the last of a batch):
        # nothing to coalesce with, so it goes now rather than on the next turn
        conn.out.append(frame)
        conn.flush()
    else:
        conn.queue(frame)


class Reply:
    """The answer to one incoming call; settling it queues the REPLY/ERROR frame."""

    __slots__ = ("conn", "deadline", "finished", "rid")

    def __init__(self, conn: Connection, rid: int, deadline: float) -> None:
        self.conn = conn  # the caller's connection
        self.rid = rid  # the caller's request id
        self.deadline = deadline  # loop time after which nobody waits for it
        self.finished = False  # settled once

    def done(self) -> bool:
        return self.finished or self.conn.loop.time() > self.deadline

    def cancelled(self) -> bool:
        return False

    def set_result(self, value: Any) -> None:
        if not self.finished:
            self.finished = True
            answer(self.conn, self.rid, self.deadline, [REPLY, self.rid, value])

    def set_exception(self, exc: BaseException) -> None:
        if not self.finished:
            self.finished = True
            answer(self.conn, self.rid, self.deadline, error_to_wire(self.rid, exc))


class CallCredit:
    """``Transport.source`` while a call is delivered: ``release(n)`` gives the peer
    call credit back (calls have a window of their own, so that calls never wait
    behind a backlog of one-way messages to another actor)."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn  # whose peer gets the credit

    def release(self, n: int = 1) -> None:
        self.conn.release_calls(n)


def on_request_adapter(owner: Any) -> Callable[[str, Any, Reply], None]:
    """The ``on_call`` of a transport given ``on_request`` (``owner._on_request``, read
    at each call): its return value, or the outcome of the awaitable it returns,
    settles the reply, so calls have one way in. Tasks it starts join
    ``owner._tasks`` (the transport cancels them at close)."""

    def on_call(peer: str, msg: Any, reply: Reply) -> None:
        result = owner._on_request(peer, msg)  # raising: the caller settles reply with it
        if not inspect.isawaitable(result):
            reply.set_result(result)
            return
        fut = asyncio.ensure_future(result)  # a Task: tasks start in creation order
        if not asyncio.isfuture(result):
            owner._tasks.add(fut)
            fut.add_done_callback(owner._tasks.discard)
        fut.add_done_callback(partial(_settle, reply))

    return on_call


def _settle(reply: Reply, fut: asyncio.Future[Any]) -> None:
    if fut.cancelled():
        reply.set_exception(asyncio.CancelledError("the handler was cancelled"))
    elif (exc := fut.exception()) is not None:
        reply.set_exception(exc)
    else:
        reply.set_result(fut.result())


class Answer(asyncio.Future):  # type: ignore[type-arg]
    """The future ``Transport.request`` awaits: ``request_to`` arms its ``timer``."""

    timer: asyncio.TimerHandle | None = None

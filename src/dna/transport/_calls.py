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

import logging
from typing import TYPE_CHECKING, Any

from ._wire import REPLY, error_to_wire

if TYPE_CHECKING:
    from ._conn import Connection

__all__ = ["MIN_ESTIMATE", "Reply", "admits", "first_estimate", "note_flushed"]

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
            self.conn.answer(self.rid, self.deadline, [REPLY, self.rid, value])

    def set_exception(self, exc: BaseException) -> None:
        if not self.finished:
            self.finished = True
            self.conn.answer(self.rid, self.deadline, error_to_wire(self.rid, exc))

"""The inbox of a route: where every message for one actor enters this node.

Pure-Python twin of ``inbox.pyx``; both must behave identically.

An inbox owns a bounded ``Mailbox``, the messages waiting for room behind it
(in arrival order), and the consumer's wake-up: a local activation or a route
to a peer drains it with ``take`` and re-arms it with ``arm`` when idle; the
first message to arrive while armed calls ``wake()`` once. Messages are
tuples whose item 3 is the reply (anything with ``done()``, ``set_result()``,
``set_exception()``) or None for a cast.

Three ways in, one per kind of sender:

- ``put(msg)``: a cast that may wait. None when admitted; else a future
  (from ``new_future()``) that resolves when the message is admitted.
- ``push(msg, token=None)``: nobody waits for room (a call, whose caller awaits
  its reply; a message from a peer; a re-route). Admitted now, or queued behind
  the waiters; always kept, in order. A queued message's ``token`` is settled
  once it leaves the queue (a peer's flow-control credit, say).
- ``adopt(other)``: a hand-over; every message of ``other`` follows ours, in
  order, waiting senders included, and ``other`` closes.

``closed`` tells a sender holding this inbox to resolve its route again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from .mailbox_py import Mailbox

__all__ = ["Credit", "Inbox"]


def _nothing() -> None:
    return None


CHUNK = 256  # settled items given back in one release() call


class Credit:
    """Flow-control credit of ``n`` messages queued behind a full mailbox (one token for
    all of them): each one settled, admitted or failed, gives its item back through
    ``source.release()``, in chunks of ``CHUNK``."""

    __slots__ = ("due", "left", "source")

    def __init__(self, source: Any, n: int = 1) -> None:
        self.source = source  # the peer's connection: release(n) gives credit back
        self.left = n  # queued messages not settled yet
        self.due = 0  # settled, not yet given back

    def done(self) -> bool:
        return False  # each queued message settles it once: it never makes one skip

    def set_result(self, _value: Any) -> None:
        self.left -= 1
        self.due += 1
        if self.due >= CHUNK or self.left <= 0:
            n, self.due = self.due, 0
            self.source.release(n)

    def set_exception(self, _exc: BaseException) -> None:
        self.set_result(None)

    def moved(self) -> None:
        """One message admitted: its item is the inbox's to give back once taken."""
        self.left -= 1
        if self.left <= 0 and self.due:
            n, self.due = self.due, 0
            self.source.release(n)


class Inbox:
    """Mailbox, waiting senders and wake-up of one route (see the module docstring)."""

    __slots__ = ("_owed", "_waiters", "armed", "closed", "mailbox", "new_future", "taken",
                 "wake")

    def __init__(self, capacity: int, new_future: Callable[[], Any]) -> None:
        self.mailbox = Mailbox(capacity)  # admitted messages, oldest first
        self._waiters: deque[tuple[Any, Any]] | None = None  # (future or None, msg); None: empty
        self.new_future = new_future  # makes the future a waiting cast awaits
        self.wake: Callable[[], None] = _nothing  # the consumer's wake-up
        self.armed = False  # the consumer is idle: the next arrival calls wake()
        self.closed = False  # the route is gone: senders resolve again
        # [source, n, end]: n items of credit go back to source once ``taken`` reaches end
        self._owed: deque[list[Any]] | None = None
        self.taken = 0  # messages taken out of the mailbox so far

    def __len__(self) -> int:
        w = self._waiters
        return len(self.mailbox) + (0 if w is None else len(w))

    @property
    def capacity(self) -> int:
        return self.mailbox.capacity

    @property
    def waiting(self) -> int:
        """Messages queued behind a full mailbox."""
        w = self._waiters
        return 0 if w is None else len(w)

    def _arrived(self) -> None:
        if self.armed:
            self.armed = False
            self.wake()

    def put(self, msg: Any) -> Any:
        """Admit ``msg`` (None) or queue it and return a future resolved on admission."""
        if not self._waiters and self.mailbox.push(msg):
            if self.armed:
                self.armed = False
                self.wake()
            return None
        fut = self.new_future()
        self._queue(fut, msg)
        return fut

    def offer(self, msg: Any) -> bool:
        """Admit ``msg`` if it fits now (nobody waiting and room); False otherwise."""
        if not self._waiters and self.mailbox.push(msg):
            if self.armed:
                self.armed = False
                self.wake()
            return True
        return False

    def push(self, msg: Any, token: Any = None) -> bool:
        """Admit ``msg`` or queue it behind the waiters; True when admitted now. A queued
        message's ``token`` (done/set_result/set_exception, like a future) is settled
        when it is admitted, failed or given up."""
        if not self._waiters and self.mailbox.push(msg):
            self._arrived()
            return True
        self._queue(token, msg)
        return False

    def push_all(self, msgs: list[Any], source: Any) -> int:
        """Admit ``msgs`` in order: as many as fit now, the rest queued behind the
        waiters under one ``Credit(source, rest)``. Returns how many were admitted now.
        Every message's credit goes back through ``source.release(n)`` once ``take``
        has handed it to the consumer (or the inbox failed or was adopted): a peer is
        paced by the actor's progress, not by room in the mailbox."""
        n = len(msgs)
        i = 0
        if not self._waiters:
            push = self.mailbox.push
            while i < n and push(msgs[i]):
                i += 1
            if i:
                self._owe(source, i)
                self._arrived()
        if i < n:
            credit = Credit(source, n - i)
            for msg in msgs[i:]:
                self._queue(credit, msg)
        return i

    def _queue(self, fut: Any, msg: Any) -> None:
        w = self._waiters
        if w is None:
            w = self._waiters = deque()
        w.append((fut, msg))
        self._arrived()  # a full mailbox is never idle, but an adopted queue may be

    def take(self, max_n: int) -> list[Any]:
        """Up to ``max_n`` oldest admitted messages; waiters move into the room freed."""
        batch = self.mailbox.drain(max_n)
        self.taken += len(batch)
        if self._owed:
            self._repay()
        if self._waiters:
            self._admit()
        return batch

    def _owe(self, source: Any, n: int) -> None:
        """The last ``n`` admitted messages are ``source``'s: its credit once taken."""
        end = self.taken + len(self.mailbox)
        owed = self._owed
        if owed is None:
            owed = self._owed = deque()
        elif owed:
            last = owed[-1]
            if last[0] is source and last[2] == end - n:  # right behind: one block
                last[1] += n
                last[2] = end
                return
        owed.append([source, n, end])

    def _repay(self) -> None:
        """Credit of what was taken: blocks ``[end - n, end)`` of the mailbox's
        positions, oldest first, the head of a block that is partly taken included."""
        owed = self._owed
        assert owed is not None
        while owed:
            first = owed[0]
            source, n, end = first
            if end <= self.taken:
                owed.popleft()
                source.release(n)
                continue
            part = self.taken - (end - n)
            if part > 0:
                first[1] = n - part
                source.release(part)
            break

    def _forgive(self) -> None:
        """The messages left (failed or handed over): every source gets its credit back."""
        owed, self._owed = self._owed, None
        if owed:
            for source, n, _ in owed:
                source.release(n)

    def _admit(self) -> None:
        w = self._waiters
        assert w is not None
        mailbox = self.mailbox
        while w and not mailbox.full:
            fut, msg = w.popleft()
            if type(fut) is Credit:  # a peer's message: its credit goes back once taken
                reply = msg[3]
                if reply is None or not reply.done():
                    mailbox.push(msg)
                    fut.moved()
                    self._owe(fut.source, 1)
                else:
                    fut.set_result(None)
                continue
            if fut is not None and fut.done():  # the sender gave up
                continue
            reply = msg[3]
            if reply is not None and reply.done():  # the caller gave up
                if fut is not None:
                    fut.set_result(None)
                continue
            mailbox.push(msg)
            if fut is not None:
                fut.set_result(None)
        if not w:
            self._waiters = None

    def arm(self) -> None:
        """The consumer is idle: wake it now if messages wait, else on the next arrival."""
        if len(self.mailbox):
            self.armed = False
            self.wake()
        else:
            self.armed = True

    def adopt(self, other: Inbox) -> None:
        """Take every message of ``other`` (admitted, then waiting), in order, behind ours."""
        if other is self:
            return
        other.closed = True
        other.armed = False
        other._forgive()
        for msg in other.mailbox.clear():
            self.push(msg)
        w = other._waiters
        other._waiters = None
        if w:
            for fut, msg in w:
                if fut is not None and fut.done():
                    continue
                if not self._waiters and self.mailbox.push(msg):
                    if fut is not None:
                        fut.set_result(None)
                    self._arrived()
                else:
                    self._queue(fut, msg)

    def fail(self, err: BaseException) -> int:
        """Fail every queued message with ``err`` (calls' replies and waiting senders);
        returns how many casts were dropped."""
        dropped = 0
        self._forgive()
        for msg in self.mailbox.clear():
            reply = msg[3]
            if reply is None:
                dropped += 1
            elif not reply.done():
                reply.set_exception(err)
        w = self._waiters
        self._waiters = None
        if w:
            for fut, msg in w:
                reply = msg[3]
                if reply is None:
                    dropped += fut is None  # a waiting sender hears of it below
                elif not reply.done():
                    reply.set_exception(err)
                if fut is not None and not fut.done():
                    fut.set_exception(err)
        return dropped

    def __repr__(self) -> str:
        state = "closed" if self.closed else "armed" if self.armed else "busy"
        return f"<Inbox {len(self.mailbox)}/{self.mailbox.capacity} +{self.waiting} {state}>"

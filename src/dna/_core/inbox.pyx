# cython: language_level=3
"""The inbox of a route (compiled). Same behaviour as ``inbox_py.py``: read its docs."""

from collections import deque

from .mailbox cimport Mailbox


def _nothing():
    return None


cdef Py_ssize_t CHUNK = 256  # settled items given back in one release() call


cdef class Credit:
    """Flow-control credit of ``n`` messages queued behind a full mailbox (one token for
    all of them): each one settled, admitted or failed, gives its item back through
    ``source.release()``, in chunks of ``CHUNK``. The inbox settles it without a call
    into Python per message."""

    def __init__(self, source, Py_ssize_t n=1):
        self.source = source
        self.left = n
        self.due = 0

    cdef void settle(self) except *:
        self.left -= 1
        self.due += 1
        if self.due >= CHUNK or self.left <= 0:
            n = self.due
            self.due = 0
            self.source.release(n)

    cdef void moved(self) except *:
        # one message admitted: its item is the inbox's to give back once taken
        self.left -= 1
        if self.left <= 0 and self.due:
            n = self.due
            self.due = 0
            self.source.release(n)

    def done(self):
        return False  # each queued message settles it once: it never makes one skip

    def set_result(self, value):
        self.settle()

    def set_exception(self, exc):
        self.settle()


cdef class Inbox:
    """Mailbox, waiting senders and wake-up of one route (see ``inbox_py``)."""

    def __cinit__(self, Py_ssize_t capacity, new_future):
        self.mailbox = Mailbox(capacity)
        self._waiters = None
        self.new_future = new_future
        self.wake = _nothing
        self.armed = False
        self.closed = False
        self._owed = None
        self.taken = 0

    def __len__(self):
        return len(self.mailbox) + (0 if self._waiters is None else len(self._waiters))

    @property
    def capacity(self):
        return self.mailbox.capacity

    @property
    def waiting(self):
        """Messages queued behind a full mailbox."""
        return 0 if self._waiters is None else len(self._waiters)

    cdef inline void _arrived(self) except *:
        if self.armed:
            self.armed = False
            self.wake()

    cpdef object put(self, object msg):
        """Admit ``msg`` (None) or queue it and return a future resolved on admission."""
        if not self._waiters and self.mailbox.push(msg):
            if self.armed:
                self.armed = False
                self.wake()
            return None
        fut = self.new_future()
        self._queue(fut, msg)
        return fut

    cpdef bint offer(self, object msg) except -1:
        """Admit ``msg`` if it fits now (nobody waiting and room); False otherwise."""
        if not self._waiters and self.mailbox.push(msg):
            if self.armed:
                self.armed = False
                self.wake()
            return True
        return False

    cpdef bint push(self, object msg, object token=None) except -1:
        """Admit ``msg`` or queue it behind the waiters; True when admitted now. A queued
        message's ``token`` is settled when it is admitted, failed or given up."""
        if not self._waiters and self.mailbox.push(msg):
            self._arrived()
            return True
        self._queue(token, msg)
        return False

    cpdef Py_ssize_t push_all(self, list msgs, object source) except -1:
        """Admit ``msgs`` in order, the rest queued under one ``Credit``; credit goes
        back to ``source`` as they are taken (see inbox_py)."""
        cdef Py_ssize_t n = len(msgs)
        cdef Py_ssize_t i = 0
        cdef Mailbox mailbox = self.mailbox
        if not self._waiters:
            while i < n and mailbox.push(msgs[i]):
                i += 1
            if i:
                self._owe(source, i)
                self._arrived()
        if i < n:
            credit = Credit(source, n - i)
            for j in range(i, n):
                self._queue(credit, msgs[j])
        return i

    cdef void _queue(self, object fut, object msg) except *:
        if self._waiters is None:
            self._waiters = deque()
        self._waiters.append((fut, msg))
        self._arrived()

    cpdef list take(self, Py_ssize_t max_n):
        """Up to ``max_n`` oldest admitted messages; waiters move into the room freed."""
        cdef list batch = self.mailbox.drain(max_n)
        self.taken += len(batch)
        if self._owed:
            self._repay()
        if self._waiters:
            self._admit()
        return batch

    cdef void _owe(self, object source, Py_ssize_t n) except *:
        # the last n admitted messages are source's: its credit once they are taken
        cdef Py_ssize_t end = self.taken + self.mailbox._count
        cdef list last
        if self._owed is None:
            self._owed = deque()
        elif self._owed:
            last = self._owed[len(self._owed) - 1]
            if last[0] is source and <Py_ssize_t>last[2] == end - n:  # right behind: one block
                last[1] += n
                last[2] = end
                return
        self._owed.append([source, n, end])

    cdef void _repay(self) except *:
        # blocks [end - n, end) of the mailbox's positions, oldest first
        owed = self._owed
        cdef list first
        cdef Py_ssize_t n, end, part
        while owed:
            first = owed[0]
            n = first[1]
            end = first[2]
            if end <= self.taken:
                owed.popleft()
                first[0].release(n)
                continue
            part = self.taken - (end - n)
            if part > 0:  # the head of the block is taken
                first[1] = n - part
                first[0].release(part)
            break

    cdef void _forgive(self) except *:
        # the messages left (failed or handed over): every source gets its credit back
        owed = self._owed
        self._owed = None
        if owed:
            for source, n, _ in owed:
                source.release(n)

    cdef void _admit(self) except *:
        w = self._waiters
        cdef Mailbox mailbox = self.mailbox
        while w and mailbox._count < mailbox.capacity:
            fut, msg = w.popleft()
            if type(fut) is Credit:  # a peer's message: its credit goes back once taken
                reply = (<tuple>msg)[3]
                if reply is None or not reply.done():
                    mailbox.push(msg)
                    (<Credit>fut).moved()
                    self._owe((<Credit>fut).source, 1)
                else:
                    (<Credit>fut).settle()
                continue
            if fut is not None and fut.done():  # the sender gave up
                continue
            reply = (<tuple>msg)[3]
            if reply is not None and reply.done():  # the caller gave up
                if fut is not None:
                    fut.set_result(None)
                continue
            mailbox.push(msg)
            if fut is not None:
                fut.set_result(None)
        if not w:
            self._waiters = None

    cpdef void arm(self) except *:
        """The consumer is idle: wake it now if messages wait, else on the next arrival."""
        if len(self.mailbox):
            self.armed = False
            self.wake()
        else:
            self.armed = True

    def adopt(self, Inbox other):
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

    def fail(self, err):
        """Fail every queued message with ``err`` (calls' replies and waiting senders);
        returns how many casts were dropped."""
        cdef Py_ssize_t dropped = 0
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

    def __repr__(self):
        state = "closed" if self.closed else "armed" if self.armed else "busy"
        return f"<Inbox {len(self.mailbox)}/{self.mailbox.capacity} +{self.waiting} {state}>"

# The inbox of one route (see inbox.pyx): mailbox, waiting senders, wake-up.

from .mailbox cimport Mailbox


cdef class Credit:
    cdef public object source     # the peer's connection: release(n) gives credit back
    cdef public Py_ssize_t left   # queued messages not settled yet
    cdef public Py_ssize_t due    # settled, not yet given back

    cdef void settle(self) except *
    cdef void moved(self) except *


cdef class Inbox:
    cdef readonly Mailbox mailbox  # admitted messages, oldest first
    cdef object _waiters           # deque of (future or None, msg) behind a full mailbox; None while empty
    cdef public object new_future  # makes the future a waiting cast awaits
    cdef public object wake        # the consumer's wake-up, called once per arming
    cdef public bint armed         # the consumer is idle: the next arrival calls wake()
    cdef public bint closed        # the route is gone: senders resolve again
    cdef object _owed              # deque of [source, n, end]: credit given back once taken reaches end; None while empty
    cdef readonly Py_ssize_t taken # messages taken out of the mailbox so far

    cdef inline void _arrived(self) except *
    cdef void _queue(self, object fut, object msg) except *
    cdef void _admit(self) except *
    cdef void _owe(self, object source, Py_ssize_t n) except *
    cdef void _repay(self) except *
    cdef void _forgive(self) except *
    cpdef object put(self, object msg)
    cpdef bint offer(self, object msg) except -1
    cpdef bint push(self, object msg, object token=*) except -1
    cpdef Py_ssize_t push_all(self, list msgs, object source) except -1
    cpdef list take(self, Py_ssize_t max_n)
    cpdef void arm(self) except *

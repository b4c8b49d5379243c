"""A bounded FIFO of Python objects: the mailbox of one activation.

``push`` one item at a time, ``drain`` a whole batch in one call. Idle
mailboxes hold no storage; storage grows by doubling up to ``capacity`` and
shrinks back when a large buffer is drained empty.
"""

from cpython.list cimport PyList_New
from cpython.ref cimport PyObject, Py_DECREF, Py_INCREF

cdef extern from "Python.h":
    # borrowed reference, no checks: the index is always in range here
    PyObject* _list_get "PyList_GET_ITEM"(object lst, Py_ssize_t i)
    # steals the reference to item, no checks
    void _list_set "PyList_SET_ITEM"(object lst, Py_ssize_t i, PyObject* item)

cdef list _EMPTY = []  # storage of every idle mailbox; never written to
cdef Py_ssize_t TINY = 4  # first storage size, and the size a large buffer shrinks to
cdef Py_ssize_t LARGE = 64  # a buffer drained empty shrinks only above this many slots


cdef class Mailbox:
    """Bounded FIFO ring buffer. ``push`` returns False when full."""

    def __cinit__(self, Py_ssize_t capacity):
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._buf = _EMPTY
        self._head = 0
        self._count = 0
        self._size = 0

    cdef bint _grow(self) except -1:
        # only called when full (_count == _size): items are _buf[_head:] + _buf[:_head]
        cdef Py_ssize_t new_size = self._size * 2 if self._size else TINY
        if new_size > self.capacity:
            new_size = self.capacity
        cdef list buf = self._buf
        self._buf = buf[self._head:] + buf[:self._head] + [None] * (new_size - self._size)
        self._head = 0
        self._size = new_size
        return True

    cpdef bint push(self, object item) except -1:
        """Append ``item``; False (item not stored) when the mailbox is full."""
        cdef Py_ssize_t i
        cdef PyObject* old
        if self._count == self._size:
            if self._size == self.capacity:
                return False
            self._grow()
        i = self._head + self._count
        if i >= self._size:
            i -= self._size
        old = _list_get(self._buf, i)  # None
        Py_INCREF(item)
        _list_set(self._buf, i, <PyObject*>item)
        Py_DECREF(<object>old)
        self._count += 1
        return True

    cpdef list drain(self, Py_ssize_t max_n):
        """Remove and return up to ``max_n`` oldest items, oldest first."""
        cdef Py_ssize_t n = self._count
        cdef Py_ssize_t i, j
        cdef list buf = self._buf
        cdef list out
        if max_n < 0:
            raise ValueError(f"max_n must be >= 0, not {max_n}")
        if n > max_n:
            n = max_n
        out = PyList_New(n)
        j = self._head
        for i in range(n):
            # move the reference from the ring into out; the slot gets None
            _list_set(out, i, _list_get(buf, j))
            Py_INCREF(None)
            _list_set(buf, j, <PyObject*>None)
            j += 1
            if j == self._size:
                j = 0
        self._count -= n
        if self._count == 0:
            self._head = 0
            if self._size > LARGE:
                self._buf = _EMPTY
                self._size = 0
        else:
            self._head = j
        return out

    def clear(self):
        """Remove and return every item, oldest first."""
        return self.drain(self._count)

    def __len__(self):
        return self._count

    @property
    def full(self):
        """True when ``push`` would refuse."""
        return self._count >= self.capacity

    def __repr__(self):
        return f"<Mailbox {self._count}/{self.capacity}>"

# The mailbox ring buffer of one activation (see mailbox.pyx).

cdef class Mailbox:
    cdef list _buf             # ring storage; _EMPTY (shared, never written) while idle
    cdef Py_ssize_t _head      # index in _buf of the oldest item
    cdef Py_ssize_t _count     # items held, 0 <= _count <= _size
    cdef Py_ssize_t _size      # len(_buf): 0, 4, 8, ... doubling, at most _capacity
    cdef readonly Py_ssize_t capacity  # most items ever held at once (>= 1)

    cdef bint _grow(self) except -1
    cpdef bint push(self, object item) except -1
    cpdef list drain(self, Py_ssize_t max_n)

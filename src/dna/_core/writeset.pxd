# The pending KV writes of one activation (see writeset.pyx).

cdef class _Missing:
    pass


cdef class WriteSet:
    cdef dict _cur             # module -> {key: bytes, or None for a delete}: the layer handlers build
    cdef dict _com             # same shape: rows handed to the store, not yet durable
    cdef Py_ssize_t _ncom      # keys in _com; 0 means nothing is committing
    cdef object _last_mod      # module of the last write (None before any) ...
    cdef dict _last_map        # ... and its dict in _cur, to skip the module lookup
    cdef list _undo            # flat (map, key, previous value or MISSING) triples since begin()
    cdef bint _logging         # begin() was called since the last take()/clear()

    cdef dict _map_for(self, object module)
    cdef void _reset_current(self)
    cdef int _put(self, object module, object key, object value) except -1

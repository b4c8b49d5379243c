"""The pending KV writes of one actor activation, in two layers.

``current`` is what the handlers of the running batch have written;
``committing`` is what ``take()`` handed to the store and is not durable yet.
Reads look in ``current``, then ``committing``, then (the caller) the store.
``begin()`` marks the start of a handler; ``rollback()`` restores ``current``
exactly as it was then.
"""

from cpython.dict cimport PyDict_GetItem, PyDict_DelItem, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.ref cimport PyObject


cdef class _Missing:
    """Type of ``MISSING``: no pending write or delete for the key."""

    def __repr__(self):
        return "MISSING"

    def __reduce__(self):
        return "MISSING"


MISSING = _Missing()
cdef object _MISSING = MISSING  # C-level alias for the hot paths
# the undo log of every write set with nothing to undo; never written to. An idle
# activation then keeps no list of its own: one object less for the cyclic
# collector to trace per activation (a burst of activations is bounded by that)
cdef list _NO_UNDO = []


cdef class WriteSet:
    """Pending writes: last write per (module, key) wins; see the module docstring."""

    def __cinit__(self):
        self._cur = {}
        self._com = {}
        self._ncom = 0
        self._last_mod = None
        self._last_map = None
        self._undo = _NO_UNDO
        self._logging = False

    cdef dict _map_for(self, object module):
        cdef PyObject* p
        cdef dict d
        if module is self._last_mod:
            return self._last_map
        p = PyDict_GetItem(self._cur, module)
        if p is NULL:
            d = {}
            self._cur[module] = d
        else:
            d = <dict>p
        self._last_mod = module
        self._last_map = d
        return d

    cdef int _put(self, object module, object key, object value) except -1:
        if type(module) is not str or type(key) is not str:
            raise TypeError(
                f"module and key must be str, not {type(module).__name__} "
                f"and {type(key).__name__}")
        cdef dict d = self._map_for(module)
        cdef PyObject* old
        cdef list undo
        if self._logging:
            old = PyDict_GetItem(d, key)
            undo = self._undo
            if undo is _NO_UNDO:
                undo = self._undo = []
            undo.append(d)
            undo.append(key)
            undo.append(_MISSING if old is NULL else <object>old)
        PyDict_SetItem(d, key, value)
        return 0

    def write(self, module, key, value):
        """Buffer ``module/key = value`` (bytes) in the current layer."""
        if type(value) is not bytes:
            raise TypeError(f"value must be bytes, not {type(value).__name__}")
        self._put(module, key, value)

    def delete(self, module, key):
        """Buffer the removal of ``module/key`` in the current layer."""
        self._put(module, key, None)

    def begin(self):
        """A handler starts: ``rollback()`` will undo what follows."""
        if PyList_GET_SIZE(self._undo):
            self._undo = _NO_UNDO
        self._logging = True

    def rollback(self):
        """Undo every write and delete of the current layer since ``begin()``."""
        cdef list undo = self._undo
        cdef Py_ssize_t i = PyList_GET_SIZE(undo)
        cdef dict d
        cdef object key, old
        while i > 0:
            i -= 3
            d = <dict>PyList_GET_ITEM(undo, i)
            key = <object>PyList_GET_ITEM(undo, i + 1)
            old = <object>PyList_GET_ITEM(undo, i + 2)
            if old is _MISSING:
                PyDict_DelItem(d, key)
            else:
                PyDict_SetItem(d, key, old)
        if PyList_GET_SIZE(undo):
            self._undo = _NO_UNDO

    def get(self, module, key):
        """The pending value: bytes, None (pending delete) or ``MISSING``."""
        cdef PyObject* p = PyDict_GetItem(self._cur, module)
        if p is not NULL:
            p = PyDict_GetItem(<dict>p, key)
            if p is not NULL:
                return <object>p
        if self._ncom:
            p = PyDict_GetItem(self._com, module)
            if p is not NULL:
                p = PyDict_GetItem(<dict>p, key)
                if p is not NULL:
                    return <object>p
        return _MISSING

    def take(self):
        """Rows ``(module, key, bytes | None)`` of the current layer, which
        becomes the committing layer (replacing it); current is then empty."""
        cdef list rows = []
        cdef object module, key, value
        cdef dict d
        for module, d in self._cur.items():
            for key, value in d.items():
                rows.append((module, key, value))
        self._com = self._cur
        self._ncom = PyList_GET_SIZE(rows)
        self._reset_current()
        return rows

    def settle(self):
        """The committing layer is durable: drop it."""
        self._com = {}
        self._ncom = 0

    def clear(self):
        """Drop both layers (a failed commit, a restart)."""
        self.settle()
        self._reset_current()

    cdef void _reset_current(self):
        self._cur = {}
        self._last_mod = None
        self._last_map = None
        if PyList_GET_SIZE(self._undo):
            self._undo = _NO_UNDO
        self._logging = False

    def __len__(self):
        cdef Py_ssize_t n = 0
        cdef dict d
        for d in self._cur.values():
            n += len(d)
        return n

    @property
    def has_committing(self):
        """True between a ``take()`` that returned rows and ``settle()``/``clear()``."""
        return self._ncom > 0

    def pending(self, module, prefix):
        """``(key, bytes | None)`` of ``module`` with key starting with ``prefix``,
        both layers merged (current wins), sorted by key."""
        cdef dict merged = {}
        cdef dict layer
        cdef PyObject* p
        cdef object key, value
        for layer in (self._com, self._cur):
            p = PyDict_GetItem(layer, module)
            if p is NULL:
                continue
            if not prefix:
                merged.update(<dict>p)
                continue
            for key, value in (<dict>p).items():
                if key.startswith(prefix):
                    merged[key] = value
        return sorted(merged.items())

    def __repr__(self):
        return f"<WriteSet {len(self)} current, {self._ncom} committing>"

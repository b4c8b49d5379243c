# cython: language_level=3
"""KV's write half (compiled): stored values packed without a call into msgpack for
bytes and str, and writes checked where they are made. Same behaviour as ``kv_py.py``."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.string cimport memcpy

from .writeset cimport WriteSet
from .framing import pack as _pack_any


cdef inline bytes _with_header(int kind, const char* data, Py_ssize_t n):
    """msgpack bin (kind 0) or str (kind 1) of ``n`` bytes at ``data``."""
    cdef Py_ssize_t h
    cdef bytes out
    cdef unsigned char* p
    if kind == 1 and n < 32:
        h = 1
    elif n < 256:
        h = 2
    elif n < 65536:
        h = 3
    else:
        h = 5
    out = PyBytes_FromStringAndSize(NULL, n + h)
    p = <unsigned char*>PyBytes_AS_STRING(out)
    if h == 1:
        p[0] = 0xa0 | <unsigned char>n
    elif h == 2:
        p[0] = 0xc4 if kind == 0 else 0xd9
        p[1] = <unsigned char>n
    elif h == 3:
        p[0] = 0xc5 if kind == 0 else 0xda
        p[1] = <unsigned char>(n >> 8)
        p[2] = <unsigned char>n
    else:
        p[0] = 0xc6 if kind == 0 else 0xdb
        p[1] = <unsigned char>(n >> 24)
        p[2] = <unsigned char>(n >> 16)
        p[3] = <unsigned char>(n >> 8)
        p[4] = <unsigned char>n
    memcpy(p + h, data, n)
    return out


cpdef bytes pack_value(object value):
    """msgpack of a stored value; bytes and str without a call into msgpack."""
    cdef Py_ssize_t n
    cdef const char* s
    if type(value) is bytes:
        n = PyBytes_GET_SIZE(value)
        if n < 0x100000000:
            return _with_header(0, PyBytes_AS_STRING(value), n)
    elif type(value) is str:
        s = PyUnicode_AsUTF8AndSize(value, &n)
        if n < 0x100000000:
            return _with_header(1, s, n)
    return _pack_any(value)


cdef class KVWriter:
    """The write half of an activation's KV view (``dna.storage.kv.BoundKV``).

    Each write is checked where it is made, so a bad one fails only its handler:
    the key must be text SQLite and CQL can store (no lone surrogate) and within
    ``max_key``, the packed value within ``max_value`` (negative: no limit).
    """

    cdef WriteSet _ws  # the activation's pending writes
    cdef object _module  # module name in the clustering key
    cdef Py_ssize_t _max_key  # most UTF-8 bytes in a key, or -1
    cdef Py_ssize_t _max_value  # most bytes in a packed value, or -1
    cdef object _too_large  # the exception class for a key or value over its limit

    def __init__(self, WriteSet ws, str module, Py_ssize_t max_key=-1,
                 Py_ssize_t max_value=-1, too_large=ValueError):
        self._ws = ws
        self._module = module
        self._max_key = max_key
        self._max_value = max_value
        self._too_large = too_large

    cdef _check_key(self, key):
        cdef Py_ssize_t n
        if type(key) is not str:
            raise TypeError(f"KV keys are str, not {type(key).__name__}")
        try:
            PyUnicode_AsUTF8AndSize(key, &n)
        except UnicodeEncodeError:
            raise ValueError(f"KV key {key!r} is not valid text (a lone surrogate?)") from None
        if self._max_key >= 0 and n > self._max_key:
            raise self._too_large(
                f"KV key of {n} bytes is over the store's limit of {self._max_key}")

    def write(self, key, value):
        """Buffer ``key = value``; durable when the batch commits."""
        self._check_key(key)
        packed = pack_value(value)
        if self._max_value >= 0 and PyBytes_GET_SIZE(packed) > self._max_value:
            raise self._too_large(
                f"KV value of {PyBytes_GET_SIZE(packed)} bytes for {key!r} is over the "
                f"store's limit of {self._max_value}")
        self._ws._put(self._module, key, packed)

    def delete(self, key):
        """Buffer the removal of ``key``."""
        self._check_key(key)
        self._ws._put(self._module, key, None)

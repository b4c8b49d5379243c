"""Message framing: msgpack payloads behind a 4-byte big-endian length.

Wire format: ``uint32 length (big-endian) + msgpack payload``, packed with
``use_bin_type=True``, unpacked with ``raw=False, strict_map_key=False,
use_list=True``. Nothing here executes code that arrives on the wire.
``framing_py.py`` is the pure-Python twin and holds the shared slow paths.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE, PyList_New
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_New
from libc.string cimport memcpy

from msgpack import Packer, packb, unpackb

from ..errors import ProtocolError
from .framing_py import (
    DEFAULT_MAX_FRAME, DEPTH_LIMIT, INT_MAX, _copy_other, _Refused, check_limit,
    describe_unpackable,
)

cdef extern from "Python.h":
    # steal the reference to item, no checks: index in range, slot empty
    void _list_set "PyList_SET_ITEM"(object lst, Py_ssize_t i, object item)
    void _tuple_set "PyTuple_SET_ITEM"(object tup, Py_ssize_t i, object item)

cdef unsigned long long MAX_PAYLOAD = 0xFFFFFFFF  # largest payload a 4-byte header announces
cdef int C_DEPTH_LIMIT = DEPTH_LIMIT  # containers nested deeper are refused
cdef object _packer_pack = Packer(use_bin_type=True).pack  # shared packer, autoreset
cdef bint _packing = False  # _packer_pack is running: a re-entrant pack uses packb


cdef inline bytes _pack(object obj):
    global _packing
    try:
        if _packing:
            return packb(obj, use_bin_type=True)
        _packing = True
        try:
            return _packer_pack(obj)
        finally:
            _packing = False
    except (TypeError, ValueError, OverflowError) as e:
        # msgpack says OverflowError (int range), ValueError (nesting): one TypeError naming where
        raise TypeError(describe_unpackable(obj, "value")) from e


cdef inline object _unpack(object data):
    return unpackb(data, raw=False, strict_map_key=False, use_list=True)


def pack(obj):
    """msgpack bytes of ``obj`` (bin type for bytes); TypeError for what msgpack cannot carry."""
    return _pack(obj)


def unpack(data):
    """The one msgpack object ``data`` holds; ProtocolError when malformed or followed by more."""
    if type(data) is not bytes:
        data = memoryview(data)  # TypeError for what is not bytes-like at all
    try:
        return _unpack(data)
    except (ValueError, TypeError) as e:
        raise ProtocolError(f"malformed msgpack payload: {type(e).__name__}: {e}") from None


cdef inline void _put_header(char* p, Py_ssize_t n) noexcept:
    p[0] = <char>((n >> 24) & 0xFF)
    p[1] = <char>((n >> 16) & 0xFF)
    p[2] = <char>((n >> 8) & 0xFF)
    p[3] = <char>(n & 0xFF)


cdef inline int _check_size(Py_ssize_t n) except -1:
    if <unsigned long long>n > MAX_PAYLOAD:
        raise ValueError(f"payload of {n} bytes exceeds the frame limit of {MAX_PAYLOAD} bytes")
    return 0


def _check_payload_size(Py_ssize_t n):
    """ValueError when a payload of ``n`` bytes cannot be framed (tests use this)."""
    _check_size(n)


def encode_frame(obj):
    """One frame: length header + msgpack payload of ``obj``."""
    cdef bytes payload = _pack(obj)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    _check_size(n)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n + 4)
    cdef char* p = PyBytes_AS_STRING(out)
    _put_header(p, n)
    memcpy(p + 4, PyBytes_AS_STRING(payload), n)
    return out


def encode_frames(objs):
    """The frames of every object in ``objs``, concatenated in one bytes object."""
    cdef list payloads = [_pack(obj) for obj in objs]
    cdef Py_ssize_t total = 0
    cdef Py_ssize_t n, i
    cdef bytes payload
    for i in range(PyList_GET_SIZE(payloads)):
        n = PyBytes_GET_SIZE(<bytes><object>PyList_GET_ITEM(payloads, i))
        _check_size(n)
        total += 4 + n
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char* p = PyBytes_AS_STRING(out)
    for i in range(PyList_GET_SIZE(payloads)):
        payload = <bytes><object>PyList_GET_ITEM(payloads, i)
        n = PyBytes_GET_SIZE(payload)
        _put_header(p, n)
        memcpy(p + 4, PyBytes_AS_STRING(payload), n)
        p += 4 + n
    return out


cdef class FrameDecoder:
    """Incremental frame decoder: ``feed`` bytes, iterate decoded objects.

    Iteration stops when the buffered bytes hold no complete frame; feed more
    and iterate again. A header announcing more than ``max_frame_size`` bytes
    raises ProtocolError as soon as the header is read; so does a payload that
    is not exactly one msgpack object. After a ProtocolError the decoder is
    poisoned: ``feed`` and ``next`` raise ProtocolError again.
    """

    def __cinit__(self, max_frame_size=DEFAULT_MAX_FRAME):
        # the shared check: the same TypeError/ValueError as the twin for any object
        self.max_frame_size = check_limit(max_frame_size)
        self._buf = bytearray()
        self._pos = 0
        self._error = None

    @property
    def buffered(self):
        """Bytes received and not yet decoded."""
        return PyByteArray_GET_SIZE(self._buf) - self._pos

    def feed(self, data):
        """Append received bytes."""
        if self._error is not None:
            raise ProtocolError(self._error)
        self._buf += data

    def __iter__(self):
        return self

    def __next__(self):
        if self._error is not None:
            raise ProtocolError(self._error)
        cdef bytearray buf = self._buf
        cdef Py_ssize_t pos = self._pos
        cdef Py_ssize_t avail = PyByteArray_GET_SIZE(buf) - pos
        cdef const unsigned char* p
        cdef unsigned long long size
        cdef bytes payload
        if avail >= 4:
            p = <const unsigned char*>PyByteArray_AS_STRING(buf) + pos
            size = ((<unsigned long long>p[0] << 24) | (<unsigned long long>p[1] << 16)
                    | (<unsigned long long>p[2] << 8) | <unsigned long long>p[3])
            if size > <unsigned long long>self.max_frame_size:
                self._poison(
                    f"frame of {size} bytes exceeds the limit of {self.max_frame_size} bytes")
            if <unsigned long long>(avail - 4) >= size:
                payload = PyBytes_FromStringAndSize(<const char*>p + 4, <Py_ssize_t>size)
                self._pos = pos + 4 + <Py_ssize_t>size
                try:
                    return _unpack(payload)
                except (ValueError, TypeError) as e:
                    self._poison(f"malformed msgpack payload: {type(e).__name__}: {e}")
        if pos:
            del buf[:pos]  # O(1) in CPython: bytearray drops a prefix by moving its start
            self._pos = 0
        raise StopIteration

    cdef int _poison(self, str message) except -1:
        self._error = message
        self._buf = bytearray()
        self._pos = 0
        raise ProtocolError(message)


# ---------------------------------------------------------------- copying


cdef inline bint _int_ok(object obj) except -1:
    cdef int overflow = 0
    PyLong_AsLongLongAndOverflow(obj, &overflow)
    if overflow == 0:
        return True
    return overflow > 0 and obj <= INT_MAX


cdef inline bint _scalar(object obj) except -1:
    """An immutable scalar msgpack carries unchanged (exact types only)."""
    cdef type t = type(obj)
    if t is str or t is bytes or t is float or t is bool or obj is None:
        return True
    return t is int and _int_ok(obj)


cdef object _copy_key(object k):
    cdef type t = type(k)
    if t is str or t is bytes or t is float or t is bool or k is None:
        return k
    if t is int:
        if _int_ok(k):
            return k
        raise _Refused
    if isinstance(k, (str, bytes, int, float)):
        return _copy_other(k, 0)
    raise _Refused


cdef object _copy(object obj, int depth):
    cdef type t = type(obj)
    if t is str or t is bytes or t is float or t is bool or obj is None:
        return obj
    if t is int:
        if _int_ok(obj):
            return obj
        raise _Refused
    if t is list:
        return _copy_list(<list>obj, depth)
    if t is tuple:
        return _copy_tuple(<tuple>obj, depth)
    if t is dict:
        return _copy_dict(<dict>obj, depth)
    if t is bytearray:
        return bytes(obj)
    return _copy_other(obj, depth)  # subclasses, memoryview, refusals: the shared slow path


cdef list _copy_list(list src, int depth):
    if depth >= C_DEPTH_LIMIT:
        raise _Refused
    cdef list out = []
    cdef Py_ssize_t i = 0
    while i < PyList_GET_SIZE(src):  # re-read: a subclass hook may have resized src
        out.append(_copy(<object>PyList_GET_ITEM(src, i), depth + 1))
        i += 1
    return out


cdef list _copy_tuple(tuple src, int depth):
    if depth >= C_DEPTH_LIMIT:
        raise _Refused
    cdef Py_ssize_t n = PyTuple_GET_SIZE(src)
    cdef list out = PyList_New(n)  # NULL slots until set; list dealloc tolerates them
    cdef Py_ssize_t i
    cdef object item
    for i in range(n):
        item = _copy(<object>PyTuple_GET_ITEM(src, i), depth + 1)
        Py_INCREF(item)
        _list_set(out, i, item)
    return out


cdef dict _copy_dict(dict src, int depth):
    if depth >= C_DEPTH_LIMIT:
        raise _Refused
    cdef dict out = {}
    cdef object k, v
    for k, v in src.items():  # raises if src changes size meanwhile
        k = _copy_key(k)
        out[k] = _copy(v, depth + 1)
    return out


def copy_packable(obj):
    """A value equal to ``unpack(pack(obj))`` (tuples become lists, bytes-likes
    bytes), built without serialising; immutable scalars are returned as is.
    TypeError, naming the type and where it is, for what msgpack cannot carry."""
    cdef type t = type(obj)
    if t is str or t is bytes:
        return obj
    try:
        return _copy(obj, 0)
    except _Refused:
        raise TypeError(describe_unpackable(obj, "value")) from None


def copy_args(args):
    """``args`` itself when every item is an immutable scalar, else a tuple of copies."""
    if type(args) is not tuple:
        args = tuple(args)
    cdef tuple src = <tuple>args
    cdef Py_ssize_t n = PyTuple_GET_SIZE(src)
    cdef Py_ssize_t i = 0
    cdef tuple out
    cdef object item
    while i < n and _scalar(<object>PyTuple_GET_ITEM(src, i)):
        i += 1
    if i == n:
        return src
    out = PyTuple_New(n)
    for i in range(n):
        try:
            item = _copy(<object>PyTuple_GET_ITEM(src, i), 0)
        except _Refused:
            raise TypeError(describe_unpackable(src[i], f"argument {i + 1}")) from None
        Py_INCREF(item)
        _tuple_set(out, i, item)
    return out

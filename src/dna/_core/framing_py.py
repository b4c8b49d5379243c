"""Message framing: msgpack payloads behind a 4-byte big-endian length.

Pure-Python twin of ``framing.pyx``; both must behave identically. The
error-message helper ``describe_unpackable`` is shared by both builds.

Wire format: ``uint32 length (big-endian) + msgpack payload``, packed with
``use_bin_type=True``, unpacked with ``raw=False, strict_map_key=False,
use_list=True``. Nothing here executes code that arrives on the wire.
"""

from __future__ import annotations

from collections.abc import Iterator
from operator import index
from struct import Struct
from typing import Any

from msgpack import ExtType, Packer, Timestamp, packb, unpackb

from ..errors import ProtocolError

MAX_PAYLOAD = 0xFFFFFFFF  # largest payload a 4-byte header can announce
DEFAULT_MAX_FRAME = 16 * 1024 * 1024  # FrameDecoder's default limit
DEPTH_LIMIT = 512  # containers nested deeper are refused by copy_packable
INT_MIN = -(2**63)  # msgpack int64 minimum
INT_MAX = 2**64 - 1  # msgpack uint64 maximum

_HEADER = Struct(">I")


class _Refused(Exception):
    """Internal: copy_packable met something msgpack cannot carry."""


# ---------------------------------------------------------------- pack/unpack


_packer_pack = Packer(use_bin_type=True).pack  # shared packer: packb() builds one per call
_packing = False  # _packer_pack is running: a re-entrant pack (dict subclass items()) uses packb


def _pack(obj: Any) -> bytes:
    global _packing
    try:
        if _packing:
            return packb(obj, use_bin_type=True)  # type: ignore[no-any-return]
        _packing = True
        try:
            return _packer_pack(obj)  # type: ignore[no-any-return]
        finally:
            _packing = False
    except (TypeError, ValueError, OverflowError) as e:
        # msgpack says OverflowError (int range), ValueError (nesting): one TypeError naming where
        raise TypeError(describe_unpackable(obj, "value")) from e


def pack(obj: Any) -> bytes:
    """msgpack bytes of ``obj`` (bin type for bytes); TypeError for what msgpack cannot carry."""
    return _pack(obj)


def unpack(data: Any) -> Any:
    """The one msgpack object ``data`` holds; ProtocolError when malformed or followed by more."""
    if type(data) is not bytes:
        data = memoryview(data)  # TypeError for what is not bytes-like at all
    try:
        return unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except (ValueError, TypeError) as e:
        raise ProtocolError(f"malformed msgpack payload: {type(e).__name__}: {e}") from None


def _check_payload_size(n: int) -> None:
    """ValueError when a payload of ``n`` bytes cannot be framed."""
    if n > MAX_PAYLOAD:
        raise ValueError(f"payload of {n} bytes exceeds the frame limit of {MAX_PAYLOAD} bytes")


def encode_frame(obj: Any) -> bytes:
    """One frame: length header + msgpack payload of ``obj``."""
    payload = _pack(obj)
    n = len(payload)
    _check_payload_size(n)
    return _HEADER.pack(n) + payload


def encode_frames(objs: list[Any]) -> bytes:
    """The frames of every object in ``objs``, concatenated in one bytes object."""
    parts = []
    for obj in objs:
        payload = _pack(obj)
        n = len(payload)
        _check_payload_size(n)
        parts.append(_HEADER.pack(n))
        parts.append(payload)
    return b"".join(parts)


# ---------------------------------------------------------------- decoder


def check_limit(max_frame_size: Any) -> int:
    """``max_frame_size`` as an int; TypeError for a non-integer, ValueError
    outside ``0..MAX_PAYLOAD`` (a 4-byte header cannot announce more). Both builds use it."""
    limit: int = index(max_frame_size)
    if not 0 <= limit <= MAX_PAYLOAD:
        raise ValueError(f"max_frame_size must be between 0 and {MAX_PAYLOAD}, not {limit}")
    return limit


class FrameDecoder:
    """Incremental frame decoder: ``feed`` bytes, iterate decoded objects.

    Iteration stops when the buffered bytes hold no complete frame; feed more
    and iterate again. A header announcing more than ``max_frame_size`` bytes
    raises ProtocolError as soon as the header is read; so does a payload that
    is not exactly one msgpack object. After a ProtocolError the decoder is
    poisoned: ``feed`` and ``next`` raise ProtocolError again.
    """

    __slots__ = ("_buf", "_error", "_max", "_pos")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME) -> None:
        max_frame_size = check_limit(max_frame_size)
        self._max = max_frame_size  # largest payload accepted
        self._buf = bytearray()  # received bytes; those before _pos are consumed
        self._pos = 0  # offset of the next frame header in _buf
        self._error: str | None = None  # set once poisoned

    @property
    def max_frame_size(self) -> int:
        """Largest payload accepted, in bytes."""
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes received and not yet decoded."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        if self._error is not None:
            raise ProtocolError(self._error)
        self._buf += data

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._error is not None:
            raise ProtocolError(self._error)
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail >= 4:
            size = int.from_bytes(buf[pos : pos + 4], "big")
            if size > self._max:
                self._poison(f"frame of {size} bytes exceeds the limit of {self._max} bytes")
            if avail - 4 >= size:
                payload = bytes(buf[pos + 4 : pos + 4 + size])
                self._pos = pos + 4 + size
                try:
                    return unpackb(payload, raw=False, strict_map_key=False, use_list=True)
                except (ValueError, TypeError) as e:
                    self._poison(f"malformed msgpack payload: {type(e).__name__}: {e}")
        if pos:
            del buf[:pos]  # O(1) in CPython: bytearray drops a prefix by moving its start
            self._pos = 0
        raise StopIteration

    def _poison(self, message: str) -> None:
        self._error = message
        self._buf = bytearray()
        self._pos = 0
        raise ProtocolError(message)


# ---------------------------------------------------------------- copying


def _copy_key(k: Any) -> Any:
    t = type(k)
    if t is str or t is bytes or t is float or t is bool or k is None:
        return k
    if t is int:
        if INT_MIN <= k <= INT_MAX:
            return k
        raise _Refused
    if isinstance(k, (str, bytes, int, float)):
        return _copy_subclass(k)
    raise _Refused


def _copy_subclass(obj: Any) -> Any:
    """Exact-type copy of a str/bytes/int/float subclass instance (what unpack would give)."""
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, bytes):
        return bytes(memoryview(obj))
    if isinstance(obj, int):
        v = int.__int__(obj)
        if INT_MIN <= v <= INT_MAX:
            return v
        raise _Refused
    return float.__float__(obj)


def _copy(obj: Any, depth: int) -> Any:
    # containers inline, loops not comprehensions: one Python frame per nesting level
    t = type(obj)
    if t is str or t is bytes or t is float or t is bool or obj is None:
        return obj
    if t is int:
        if INT_MIN <= obj <= INT_MAX:
            return obj
        raise _Refused
    if t is list or t is tuple:
        if depth >= DEPTH_LIMIT:
            raise _Refused
        depth += 1
        out = []
        for x in obj:
            out.append(_copy(x, depth))
        return out
    if t is dict:
        if depth >= DEPTH_LIMIT:
            raise _Refused
        depth += 1
        d = {}
        for k, v in obj.items():
            k = _copy_key(k)
            d[k] = _copy(v, depth)
        return d
    return _copy_other(obj, depth)


def _copy_other(obj: Any, depth: int) -> Any:
    """copy_packable's slow path: subclasses, bytearray, memoryview, refusals."""
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, (str, bytes, int, float)) and not isinstance(obj, bool):
        return _copy_subclass(obj)
    if isinstance(obj, (ExtType, Timestamp)):
        raise _Refused
    if isinstance(obj, (list, tuple)):
        return _copy(list(obj), depth)
    if isinstance(obj, dict):
        return _copy(dict(obj.items()), depth)
    raise _Refused


def _is_int_out_of_range(obj: Any) -> bool:
    return (
        isinstance(obj, int)
        and not isinstance(obj, bool)
        and not INT_MIN <= int.__int__(obj) <= INT_MAX
    )


def _key_problem(k: Any) -> str | None:
    if _is_int_out_of_range(k):
        return "dict key: int out of the msgpack range [-2**63, 2**64-1]"
    if k is None or isinstance(k, (str, bytes, int, float)):
        return None
    return f"dict key of type {type(k).__name__} is not msgpack-serialisable"


def _problem(obj: Any, depth: int, path: list[str]) -> str | None:
    """Why ``obj`` cannot be copied (path appended), or None; mirrors ``_copy``."""
    if _is_int_out_of_range(obj):
        return "int out of the msgpack range [-2**63, 2**64-1]"
    if obj is None or isinstance(obj, (str, bytes, int, float, bytearray, memoryview)):
        return None
    if isinstance(obj, (ExtType, Timestamp)) or not isinstance(obj, (list, tuple, dict)):
        return f"object of type {type(obj).__name__} is not msgpack-serialisable"
    if depth >= DEPTH_LIMIT:
        return f"containers nested more than {DEPTH_LIMIT} deep"
    if isinstance(obj, dict):
        for k, v in obj.items():
            why = _key_problem(k)
            if why is not None:
                return why
            path.append(f"[{_short_repr(k)}]")
            why = _problem(v, depth + 1, path)
            if why is not None:
                return why
            path.pop()
    else:
        for i, x in enumerate(obj):
            path.append(f"[{i}]")
            why = _problem(x, depth + 1, path)
            if why is not None:
                return why
            path.pop()
    return None


def _short_repr(k: Any) -> str:
    r = repr(k)
    return r if len(r) <= 40 else r[:37] + "..."


def describe_unpackable(obj: Any, root: str) -> str:
    """The TypeError message for a value copy_packable refused, e.g.
    ``argument 1['a'][2]: object of type set is not msgpack-serialisable``."""
    path: list[str] = []
    why = _problem(obj, 0, path) or "not msgpack-serialisable"
    where = "".join(path)
    if len(where) > 200:
        where = where[:100] + "..." + where[-60:]
    return f"{root}{where}: {why}"


def copy_packable(obj: Any) -> Any:
    """A value equal to ``unpack(pack(obj))`` (tuples become lists, bytes-likes
    bytes), built without serialising; immutable scalars are returned as is.
    TypeError, naming the type and where it is, for what msgpack cannot carry."""
    t = type(obj)
    if t is str or t is bytes:
        return obj
    if t is int and INT_MIN <= obj <= INT_MAX:
        return obj
    try:
        return _copy(obj, 0)
    except _Refused:
        raise TypeError(describe_unpackable(obj, "value")) from None


def copy_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` itself when every item is an immutable scalar, else a tuple of copies."""
    if type(args) is not tuple:
        args = tuple(args)
    for x in args:
        t = type(x)
        if t is str or t is bytes or t is float or t is bool or x is None:
            continue
        if t is int and INT_MIN <= x <= INT_MAX:
            continue
        break
    else:
        return args
    out = []
    for i, x in enumerate(args):
        try:
            out.append(_copy(x, 0))
        except _Refused:
            raise TypeError(describe_unpackable(x, f"argument {i + 1}")) from None
    return tuple(out)

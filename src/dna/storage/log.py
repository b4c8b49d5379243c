"""``Log``: an append-only sequence of values per actor, addressed by offset.

``self.log.append(v)`` returns the entry's offset and is a write of the running
batch: committed atomically with everything else the handler wrote, discarded
(offset included) if it raises. Offsets are dense and grow by one per append,
across re-activations. ``await self.log.read(start, limit)`` returns
``(offset, value)`` pairs from ``start``, pending appends included.
``truncate(before)`` drops the entries below ``before`` (also a write of the
batch): reads never return them again.

Rows (module = the attribute name, one partition on CQL): ``"e" + 16 hex
digits`` per entry, so entries sort by offset, and one meta row ``"m"`` holding
``[gc, start, end]``: entries below ``start`` are truncated, rows below ``gc``
are deleted (a truncation deletes at most ``GC_CHUNK`` rows per call; later
truncations delete the rest), ``end`` is the next offset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._core import MISSING, pack, unpack
from ..errors import TooLarge
from .base import StorageContext, StorageModule

__all__ = ["GC_CHUNK", "BoundLog", "Log"]

GC_CHUNK = 5000  # rows of truncated entries one truncate() deletes at most
_META = "m"  # key of the meta row: [gc, start, end]


def _ekey(offset: int) -> str:
    return f"e{offset:016x}"


class Log(StorageModule["BoundLog"]):
    """Declare on an actor class: ``log = Log()``. ``name`` pins the stored module name."""

    def bind(self, ctx: StorageContext) -> BoundLog:
        bound = BoundLog(ctx, self.name)
        ctx.attach(bound)
        return bound


class BoundLog:
    """The log as one activation sees it."""

    __slots__ = ("_ctx", "_durable", "_last", "_last_meta", "_name")

    def __init__(self, ctx: StorageContext, module: str) -> None:
        self._ctx = ctx  # the activation's storage
        self._name = module  # module name in the clustering key
        self._durable = (0, 0, 0)  # [gc, start, end] as last committed
        self._last: Any = None  # the packed meta row this view last wrote ...
        self._last_meta = (0, 0, 0)  # ... and what it holds

    async def load(self) -> None:
        v = await self._ctx.store.read(self._ctx.claim, self._name, _META)
        if v is not None:
            gc, start, end = unpack(v)
            self._durable = (gc, start, end)

    def seal(self) -> Callable[[], None] | None:
        v = self._ctx.ws.get(self._name, _META)  # what this commit (or one before) holds
        if v is MISSING or v is None:
            return None
        meta = self._decode(v)

        def durable() -> None:
            self._durable = meta

        return durable

    def _decode(self, v: Any) -> tuple[int, int, int]:
        if v is self._last:
            return self._last_meta
        gc, start, end = unpack(v)
        return (gc, start, end)

    def _meta(self) -> tuple[int, int, int]:
        """[gc, start, end] as this activation sees it: pending writes first (a handler
        that raised took its meta write with it), else the last commit."""
        v = self._ctx.ws.get(self._name, _META)
        if v is MISSING or v is None:
            return self._durable
        return self._decode(v)

    def _write_meta(self, meta: tuple[int, int, int]) -> None:
        b = pack(list(meta))
        self._ctx.ws.write(self._name, _META, b)
        self._last = b
        self._last_meta = meta

    @property
    def start(self) -> int:
        """The first offset a read can return (entries below it were truncated)."""
        return self._meta()[1]

    @property
    def end(self) -> int:
        """The offset the next append gets (pending appends included)."""
        return self._meta()[2]

    def append(self, value: Any) -> int:
        """Add ``value`` (anything msgpack can carry) at the end; returns its offset."""
        packed = pack(value)
        limit = self._ctx.max_value_bytes
        if limit is not None and len(packed) > limit:
            raise TooLarge(f"log entry of {len(packed)} bytes is over the store's limit of "
                           f"{limit} bytes")
        gc, start, end = self._meta()
        self._ctx.ws.write(self._name, _ekey(end), packed)
        self._write_meta((gc, start, end + 1))
        return end

    def truncate(self, before: int) -> None:
        """Drop every entry with an offset below ``before`` (at most up to ``end``)."""
        if type(before) is not int:
            raise TypeError(f"before is an int offset, not {type(before).__name__}")
        gc, start, end = self._meta()
        start = max(start, min(before, end))
        upto = min(start, gc + GC_CHUNK)
        ws = self._ctx.ws
        for off in range(gc, upto):
            ws.delete(self._name, _ekey(off))
        self._write_meta((max(gc, upto), start, end))

    async def read(self, start: int = 0, limit: int = 100) -> list[tuple[int, Any]]:
        """Up to ``limit`` ``(offset, value)`` pairs from offset ``start`` on, in order,
        pending appends included; entries below ``self.start`` are never returned."""
        if type(start) is not int or type(limit) is not int:
            raise TypeError("start and limit are int")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        _, first, end = self._meta()
        start = max(start, first)
        if start >= end:
            return []
        after = _ekey(start - 1) if start > 0 else None
        rows = await self._ctx.list(self._name, "e", min(limit, end - start), after)
        return [(int(k[1:], 16), unpack(v)) for k, v in rows]

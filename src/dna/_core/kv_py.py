"""KV's write half: stored values packed, writes checked where they are made (a key
that is not valid text or too long, a value over the store's limit fails only the
handler that wrote it). Pure-Python twin of ``kv.pyx``; both must behave identically."""

from __future__ import annotations

from typing import Any

from .framing_py import pack

__all__ = ["KVWriter", "pack_value"]


def pack_value(value: Any) -> bytes:
    """msgpack of a stored value (the compiled build inlines bytes and str)."""
    return pack(value)


class KVWriter:
    """The write half of an activation's KV view (``dna.storage.kv.BoundKV``).

    Each write is checked where it is made, so a bad one fails only its handler:
    the key must be text SQLite and CQL can store (no lone surrogate) and within
    ``max_key``, the packed value within ``max_value`` (negative: no limit).
    """

    __slots__ = ("_max_key", "_max_value", "_module", "_too_large", "_ws")

    def __init__(self, ws: Any, module: str, max_key: int = -1, max_value: int = -1,
                 too_large: type[Exception] = ValueError) -> None:
        self._ws = ws  # the activation's pending writes
        self._module = module  # module name in the clustering key
        self._max_key = max_key  # most UTF-8 bytes in a key, or -1
        self._max_value = max_value  # most bytes in a packed value, or -1
        self._too_large = too_large  # the exception class for a key or value over its limit

    def _check_key(self, key: Any) -> None:
        if type(key) is not str:
            raise TypeError(f"KV keys are str, not {type(key).__name__}")
        try:
            n = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError(f"KV key {key!r} is not valid text (a lone surrogate?)") from None
        if self._max_key >= 0 and n > self._max_key:
            raise self._too_large(
                f"KV key of {n} bytes is over the store's limit of {self._max_key}")

    def write(self, key: str, value: Any) -> None:
        """Buffer ``key = value``; durable when the batch commits."""
        self._check_key(key)
        packed = pack(value)
        if self._max_value >= 0 and len(packed) > self._max_value:
            raise self._too_large(
                f"KV value of {len(packed)} bytes for {key!r} is over the "
                f"store's limit of {self._max_value}")
        self._ws.write(self._module, key, packed)

    def delete(self, key: str) -> None:
        """Buffer the removal of ``key``."""
        self._check_key(key)
        self._ws.delete(self._module, key)

"""``KV``: an actor's key-value storage module.

``self.kv.write(k, v)`` and ``self.kv.delete(k)`` are buffered in the
activation's write set and committed atomically with the rest of the batch;
``await self.kv.read(k)`` and ``await self.kv.list(...)`` see those pending
writes first, then the store. Keys are ``str``; values anything msgpack can
carry (checked at ``write``: ``TypeError`` otherwise).
"""

from __future__ import annotations

from typing import Any

from .._core import KVWriter, unpack
from ..errors import TooLarge
from .base import StorageContext, StorageModule

__all__ = ["KV", "BoundKV"]


class KV(StorageModule["BoundKV"]):
    """Declare on an actor class: ``kv = KV()``. ``name`` pins the stored module name."""

    def bind(self, ctx: StorageContext) -> BoundKV:
        return BoundKV(ctx, self.name)


def _check_key(key: object) -> str:
    if type(key) is not str:
        raise TypeError(f"KV keys are str, not {type(key).__name__}")
    return key


class BoundKV(KVWriter):
    """The KV module as one activation sees it (``write``/``delete`` are compiled)."""

    __slots__ = ("_ctx", "_name")

    def __init__(self, ctx: StorageContext, module: str) -> None:
        limits = (ctx.max_key_bytes, ctx.max_value_bytes)
        max_key, max_value = (-1 if n is None else n for n in limits)
        super().__init__(ctx.ws, module, max_key, max_value, TooLarge)
        self._ctx = ctx  # the activation's storage, scoped to its claim
        self._name = module  # module name in the clustering key

    async def read(self, key: str) -> Any:
        """The value of ``key`` (pending writes first), or None."""
        v = await self._ctx.read(self._name, _check_key(key))
        return None if v is None else unpack(v)

    async def list(
        self, prefix: str = "", limit: int = 100, start_after: str | None = None
    ) -> list[tuple[str, Any]]:
        """Up to ``limit`` ``(key, value)`` pairs with ``key`` starting with ``prefix``,
        in key order, after ``start_after`` if given; pending writes included."""
        if type(prefix) is not str or not (start_after is None or type(start_after) is str):
            raise TypeError("prefix and start_after are str")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        rows = await self._ctx.list(self._name, prefix, limit, start_after)
        return [(k, unpack(v)) for k, v in rows]

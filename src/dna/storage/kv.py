"""``KV``: an actor's key-value storage module.

``self.kv.write(k, v)`` and ``self.kv.delete(k)`` are buffered in the
activation's write set and committed atomically with the rest of the batch;
``await self.kv.read(k)`` and ``await self.kv.list(...)`` see those pending
writes first, then the store. Keys are ``str``; values anything msgpack can
carry (checked at ``write``: ``TypeError`` otherwise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

from .._core import MISSING, KVWriter, unpack
from ..actor import StorageModule
from ..errors import InterfaceError

if TYPE_CHECKING:
    from ..activation import Activation

__all__ = ["KV", "BoundKV"]


class KV(StorageModule):
    """Declare on an actor class: ``kv = KV()``. ``name`` pins the stored module name."""

    def __init__(self, name: str = "") -> None:
        if name and (not isinstance(name, str) or "\x00" in name):
            raise ValueError("KV name must be a str without NUL")
        self.name = name

    def bind(self, activation: Activation) -> BoundKV:
        return BoundKV(activation, self.name)

    # Each activation's bound view sits in the instance dict and shadows this
    # (non-data) descriptor; reaching here from an instance means no activation.
    @overload
    def __get__(self, obj: None, owner: type) -> KV: ...
    @overload
    def __get__(self, obj: object, owner: type) -> BoundKV: ...
    def __get__(self, obj: object, owner: type) -> KV | BoundKV:
        if obj is None:
            return self
        raise InterfaceError(f"{owner.__name__}.{self.name} is usable only inside an activation")


def _check_key(key: object) -> str:
    if type(key) is not str:
        raise TypeError(f"KV keys are str, not {type(key).__name__}")
    return key


class BoundKV(KVWriter):
    """The KV module as one activation sees it (``write``/``delete`` are compiled)."""

    __slots__ = ("_act", "_name", "_pending")

    def __init__(self, activation: Activation, module: str) -> None:
        super().__init__(activation.ws, module)
        self._act = activation  # for the claim and the store
        self._name = module  # module name in the clustering key
        self._pending = activation.ws  # pending writes (reads look here first)

    async def read(self, key: str) -> Any:
        """The value of ``key`` (pending writes first), or None."""
        v = self._pending.get(self._name, _check_key(key))
        if v is MISSING:
            act = self._act
            assert act.claim is not None
            v = await act.node.store.read(act.claim, self._name, key)
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
        pending = self._pending.pending(self._name, prefix)
        if start_after is not None:
            pending = [(k, v) for k, v in pending if k > start_after]
        act = self._act
        assert act.claim is not None
        # every pending delete may hide one stored row: ask for that many more
        extra = sum(1 for _, v in pending if v is None)
        stored = await act.node.store.list(
            act.claim, self._name, prefix, limit + extra, start_after
        )
        merged = dict(stored)
        for k, v in pending:
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        keys = sorted(merged)
        if len(stored) == limit + extra and stored:
            horizon = stored[-1][0]  # beyond the last stored key we know nothing
            keys = [k for k in keys if k <= horizon]
        return [(k, unpack(merged[k])) for k in keys[:limit]]

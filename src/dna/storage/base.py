"""What a storage module is, and the typed context it binds to.

A storage module is declared on an actor class (``kv = KV()``) and bound once
per activation: ``bind(ctx)`` returns the object handlers use
(``self.kv``). The ``StorageContext`` is all a module sees of the runtime:

- ``ctx.ws``: the activation's write set. Writes made with ``ws.write(module,
  key, packed)`` / ``ws.delete(module, key)`` are part of the running
  handler's batch: committed atomically with everything else it wrote,
  discarded if the handler raises.
- ``await ctx.read(module, key)``: the value as this activation sees it (its
  pending writes first, then the store), packed bytes or None.
- ``await ctx.list(module, prefix, limit, start_after)``: ``(key, packed)``
  pairs in key order with pending writes merged in.
- ``ctx.max_key_bytes`` / ``ctx.max_value_bytes``: the store's limits, for
  validating a write where it is made.
- ``ctx.attach(bound)``: a bound view that keeps state beside its rows (``Log``'s
  next offset, ``Outbox``'s queue) gets ``await bound.load()`` before the first
  message and ``bound.seal()`` right before each commit takes the pending rows
  (it may still write); what ``seal`` returns (a callable or None) runs once
  that commit is durable.

Rows of a module live under its ``name`` (a prefix of the clustering key on
CQL), so several modules commit together. Adding a module is one new file
here: subclass ``StorageModule[BoundView]``, implement ``bind`` (the base gives
the descriptor that types ``self.<attr>`` as the bound view).
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar, overload

from .._core import MISSING
from ..errors import InterfaceError

if TYPE_CHECKING:
    from ..store import Claim, Store

__all__ = ["DESTROY", "Attached", "StorageContext", "StorageModule"]

# The write-set entry ``(module, key)`` that ``Actor.destroy()`` makes: a batch
# holding it destroys the actor at its commit (no module name may contain NUL).
DESTROY = ("\x00destroy", "")


BoundT = TypeVar("BoundT")


class StorageModule(abc.ABC, Generic[BoundT]):
    """Base of class-level storage declarations such as ``kv = KV()``.

    Each activation gets its own bound view (``bind``) set on the instance, which
    shadows this descriptor: ``self.kv`` is typed as the bound view, and reaching
    the declaration itself from an instance (no activation) is an ``InterfaceError``.
    """

    name: str = ""  # stored module name (a prefix of the clustering key on CQL)
    attr: str = ""  # the attribute it is declared as

    def __init__(self, name: str = "") -> None:
        """``name`` pins the stored module name (default: the attribute's name)."""
        if name and (not isinstance(name, str) or "\x00" in name):
            raise ValueError(f"{type(self).__name__} name must be a str without NUL")
        self.name = name

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name
        if not self.name:
            self.name = name

    @abc.abstractmethod
    def bind(self, ctx: StorageContext) -> BoundT:
        """The object handlers use for this module in one activation."""

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...
    @overload
    def __get__(self, obj: object, owner: type) -> BoundT: ...
    def __get__(self, obj: object, owner: type) -> Self | BoundT:
        if obj is None:
            return self
        raise InterfaceError(f"{owner.__name__}.{self.attr} is usable only inside an activation")

    def handlers(self) -> dict[str, Callable[..., Any]]:
        """Call handlers this module adds to the actor class that declares it
        (name -> ``async def handler(actor, ...)``); the runtime sends them
        messages like any other. Default: none."""
        return {}


class Attached(Protocol):
    """A bound view with state beside its rows (see ``StorageContext.attach``)."""

    async def load(self) -> None: ...
    def seal(self) -> Callable[[], None] | None: ...


class StorageContext:
    """One activation's storage, scoped to its claim (see the module docstring)."""

    __slots__ = ("attached", "claim", "max_key_bytes", "max_value_bytes", "outbox", "store",
                 "timers", "ws")

    def __init__(self, ws: Any, store: Store, claim: Claim) -> None:
        self.ws = ws  # pending writes: the running batch and the commit in flight
        self.store = store  # committed state, read under ``claim``
        self.claim = claim  # the ownership every read and commit is fenced by
        self.max_key_bytes: int | None = store.max_key_bytes  # None: no limit
        self.max_value_bytes: int | None = store.max_value_bytes  # None: no limit
        # bound views told of loads and commits: a tuple, since most actors have none
        # and an empty list per activation is one more object for the collector
        self.attached: tuple[Attached, ...] = ()
        self.outbox: Any = None  # the bound Outbox, when the actor declares one
        self.timers: Any = None  # the bound Timers, when the actor declares them

    async def read(self, module: str, key: str) -> bytes | None:
        """The packed value of ``key`` (pending writes first), or None."""
        v = self.ws.get(module, key)
        if v is MISSING:
            return await self.store.read(self.claim, module, key)
        return v  # type: ignore[no-any-return]

    async def read_many(self, module: str, keys: list[str]) -> dict[str, bytes | None]:
        """``read`` of each of ``keys`` (pending writes first), the stored ones at once."""
        out: dict[str, bytes | None] = {}
        stored = []
        for key in keys:
            v = self.ws.get(module, key)
            if v is MISSING:
                stored.append(key)
            else:
                out[key] = v
        if stored:
            out.update(zip(stored, await self.store.read_many(self.claim, module, stored),
                           strict=True))
        return out

    async def list(
        self, module: str, prefix: str, limit: int, start_after: str | None
    ) -> list[tuple[str, bytes]]:
        """Up to ``limit`` ``(key, packed)`` pairs under ``prefix`` after ``start_after``,
        in key order, pending writes merged in."""
        pending = self.ws.pending(module, prefix)
        if start_after is not None:
            pending = [(k, v) for k, v in pending if k > start_after]
        # every pending delete may hide one stored row: ask for that many more
        extra = sum(1 for _, v in pending if v is None)
        stored = await self.store.list(self.claim, module, prefix, limit + extra, start_after)
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
        return [(k, merged[k]) for k in keys[:limit]]

    # ------------------------------------------------------------ attached views

    def attach(self, bound: Attached) -> None:
        """Tell ``bound`` of this activation's start (``load``) and commits (``seal``)."""
        self.attached = (*self.attached, bound)

    async def load(self) -> None:
        """Before the first message: every attached view loads its state."""
        for bound in self.attached:
            await bound.load()

    def seal(self) -> builtins.list[Callable[[], None]]:
        """Right before ``ws.take()``: what to run once that commit is durable."""
        done: builtins.list[Callable[[], None]] = []
        for bound in self.attached:
            f = bound.seal()
            if f is not None:
                done.append(f)
        return done

"""The actor catalog as users see it: ``Node.catalog``, ``Node.inspect``, ``dna actors``.

``CatalogEntry`` is one actor that exists in storage; ``CatalogPage`` a page
of them with the cursor of the next. Both come from the ``Store`` contract
(``catalog``, ``dump``), so every store lists the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._core import unpack
from .actor import Actor, ActorRef
from .errors import InterfaceError
from .ids import ActorId

if TYPE_CHECKING:
    from .store import Store

__all__ = ["MAX_LIMIT", "CatalogEntry", "CatalogPage", "decode", "inspect_store", "list_actors"]

MAX_LIMIT = 10_000  # actors per catalog page, rows per inspect, at most


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One actor that exists in storage (claimed at least once, not destroyed).

    ``owner``: the node id holding its claim, None when released (passivated).
    ``active``: an activation of it runs on a live node (``owner`` is set and
    that node is alive as this node judges it). ``epoch``: grows on every claim.
    """

    actor_id: ActorId
    owner: str | None
    epoch: int
    active: bool

    @property
    def type_name(self) -> str:
        return self.actor_id.type_name

    @property
    def namespace(self) -> str:
        return self.actor_id.namespace

    @property
    def key(self) -> str:
        return self.actor_id.key


@dataclass(frozen=True, slots=True)
class CatalogPage:
    """Up to ``limit`` entries, and ``next``: the opaque cursor to pass as ``after``
    for the next page, None once the listing is complete. A page may hold fewer
    entries than asked (even none) while ``next`` is not None: go on until None."""

    entries: list[CatalogEntry]
    next: str | None

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def _type_name(atype: Any) -> str | None:
    if atype is None:
        return None
    if isinstance(atype, str):
        if not atype:
            raise ValueError("an actor type name is a non-empty str")
        return atype
    if isinstance(atype, type) and issubclass(atype, Actor) and atype is not Actor:
        return atype.type_name
    raise InterfaceError(f"{atype!r} is neither a dna.Actor subclass nor a type name")


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int, not {type(limit).__name__}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    return limit


async def list_actors(
    store: Store, atype: Any, namespace: str | None, after: str | None, limit: int
) -> CatalogPage:
    """One catalog page of ``store`` (see ``Node.catalog``)."""
    type_name = _type_name(atype)
    if namespace is not None and not isinstance(namespace, str):
        raise TypeError("namespace must be a str or None")
    if after is not None and not isinstance(after, str):
        raise TypeError("after must be a cursor (str, a page's next) or None")
    rows, cursor = await store.catalog(type_name, namespace, after, _check_limit(limit))
    live = {n.node_id for n in await store.nodes() if n.alive is not False}
    entries = [CatalogEntry(aid, owner, epoch, owner in live) for aid, owner, epoch in rows]
    return CatalogPage(entries, cursor)


def decode(value: bytes) -> Any:
    """A stored value as msgpack decodes it; bytes that are not msgpack stay bytes."""
    try:
        return unpack(value)
    except Exception:
        return bytes(value)


async def inspect_store(
    store: Store, ref: ActorRef | ActorId, limit: int
) -> dict[str, list[tuple[str, Any]]] | None:
    """An actor's committed storage by module (see ``Node.inspect``); None when the
    actor does not exist (never created, or destroyed)."""
    if isinstance(ref, ActorRef):
        aid = ref.actor_id
    elif isinstance(ref, ActorId):
        aid = ref
    else:
        raise TypeError(f"inspect takes an actor ref (node.ref(...)), not {type(ref).__name__}")
    rows = await store.dump(aid, _check_limit(limit))
    if rows is None:
        return None
    out: dict[str, list[tuple[str, Any]]] = {}
    for module, key, value in rows:
        out.setdefault(module, []).append((key, None if value is None else decode(value)))
    return out

"""The one ``Store`` protocol every backend implements (SQLite, memory, CQL).

Registry, membership and actor storage all go through it. The node runtime
never sees a driver: it holds ``Claim`` objects and hands the store rows.
"""

from __future__ import annotations

import abc
import builtins
from dataclasses import dataclass
from typing import Any

__all__ = ["ActorId", "Claim", "NodeRecord", "Row", "Store", "prefix_end"]

# One storage write: (module, key, packed value), or (module, key, None) for a delete.
Row = tuple[str, str, "bytes | None"]


@dataclass(frozen=True, slots=True)
class ActorId:
    """The cluster-wide name of an actor: the seed's ``{namespace, actor_id, name}``."""

    namespace: str
    type_name: str
    key: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.type_name}/{self.key}"


class Claim:
    """Proof that this node owns ``actor`` at ``epoch``; every commit is fenced by it.

    ``handle`` is private to the store that made the claim (a row id, a prepared key).
    """

    __slots__ = ("actor", "epoch", "handle", "node_id")

    def __init__(self, actor: ActorId, node_id: str, epoch: int, handle: Any = None) -> None:
        self.actor = actor  # whose ownership this is
        self.node_id = node_id  # the owning node
        self.epoch = epoch  # grows on every re-claim; commits check it
        self.handle = handle  # store-private addressing (row id, partition key)

    def __repr__(self) -> str:
        return f"Claim({self.actor}, node={self.node_id}, epoch={self.epoch})"


@dataclass(slots=True)
class NodeRecord:
    """One row of the nodes table as a store reports it."""

    node_id: str
    address: str
    heartbeat: int
    draining: bool
    load: int = 0
    alive: bool | None = None  # set where the store can know (SQLite: OS lock), else None


class Store(abc.ABC):
    """What a node needs from a database. All methods are coroutines unless noted.

    A store is opened once by one node (``open``) and closed by it. Errors: a
    database that cannot be reached raises ``StoreUnavailable``; a fenced write
    raises ``StaleEpoch``; a live foreign owner raises ``NotOwner``.
    """

    #: short name used by the command line and in messages ("sqlite", "memory", "cql")
    kind: str = "?"
    #: seconds after which peers may reclaim a silent node's names; None: liveness is
    #: not a lease (an OS lock, an open client) and nodes never fence themselves
    lease: float | None = None
    #: seconds between this node's heartbeats (lease stores), None otherwise
    heartbeat_interval: float | None = None
    #: loop time at which the last successful heartbeat was issued (lease stores)
    last_heartbeat: float | None = None
    #: largest key (UTF-8 bytes) and packed value a commit may carry
    max_key_bytes: int = 4096
    max_value_bytes: int = 16 * 1024 * 1024 - 4096

    async def heartbeat(self, load: int | None = None) -> None:
        """Refresh this node's row (and its published load); a no-op without a lease."""
        return None

    async def set_draining(self, draining: bool = True) -> None:
        """Mark this node as leaving: peers stop routing new names to it."""
        return None

    @abc.abstractmethod
    async def open(self, node_id: str, address: str = "") -> None:
        """Connect, create the schema if missing, and register this node as alive."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; this node's liveness ends (its claims become reclaimable)."""

    @abc.abstractmethod
    async def claim(self, actor: ActorId) -> Claim:
        """Make this node the owner of ``actor`` with a fresh epoch.

        Unowned: first claim. Owned by this node or by a dead/draining one:
        reclaim with ``epoch + 1``. Owned by a live other node: ``NotOwner``.
        Concurrent claims of different actors are pipelined by the store.
        """

    @abc.abstractmethod
    async def release(self, claim: Claim) -> None:
        """Give up ownership (passivation, drain) if ``claim`` is still current."""

    @abc.abstractmethod
    async def commit(self, claim: Claim, rows: list[Row]) -> None:
        """Apply ``rows`` atomically, only if ``claim.epoch`` is still current.

        All or nothing: ``StaleEpoch`` when fenced, ``StoreError`` otherwise.
        Returns once the rows are durable.
        """

    @abc.abstractmethod
    async def read(self, claim: Claim, module: str, key: str) -> bytes | None:
        """The committed value of one key, or None."""

    @abc.abstractmethod
    async def list(
        self,
        claim: Claim,
        module: str,
        prefix: str = "",
        limit: int = 100,
        start_after: str | None = None,
    ) -> list[tuple[str, bytes]]:
        """Committed ``(key, value)`` pairs whose key starts with ``prefix``, in key order."""

    async def owner_of(self, actor: ActorId) -> tuple[str | None, int]:
        """``(owner node id or None, epoch)`` as committed; for tests and routing."""
        raise NotImplementedError

    async def nodes(self) -> builtins.list[NodeRecord]:
        """Every node row the store knows (cluster status)."""
        raise NotImplementedError


def prefix_end(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` in code point
    order (the order of UTF-8 bytes: SQLite's BINARY and CQL's text order), or None
    if there is none. Stores list a prefix as the key range ``[prefix, end)``."""
    chars = [*prefix]
    while chars:
        nxt = ord(chars.pop()) + 1
        if nxt == 0xD800:  # surrogates cannot be stored: skip them
            nxt = 0xE000
        if nxt <= 0x10FFFF:
            return "".join(chars) + chr(nxt)
    return None

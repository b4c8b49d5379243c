"""The one ``Store`` protocol every backend implements (SQLite, memory, CQL).

Registry, membership and actor storage all go through it. The node runtime
never sees a driver: it holds ``Claim`` objects and hands the store rows.
"""

from __future__ import annotations

import abc
import builtins
import struct
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import TooLarge
from ..ids import ActorId

__all__ = ["ALIVE", "DEAD", "SUSPECT", "TIMERS_MODULE", "TIMER_HEADER_BYTES", "UNKNOWN",
           "ActorId", "CatalogRow", "Claim", "DueTimer", "NodeRecord", "Row", "Store",
           "prefix_end", "timer_header"]

# NodeRecord.state: what an observer knows of a node's liveness
ALIVE = "alive"  # live for sure (its lock is held, or its heartbeat moved recently)
SUSPECT = "suspect"  # heartbeat stalled for a while, lease not out yet: not reclaimable
DEAD = "dead"  # its lock is free or its lease ran out: its actors may be reclaimed
UNKNOWN = "unknown"  # first seen by this observer: not judged yet (treat as alive)

# One storage write: (module, key, packed value), or (module, key, None) for a delete.
Row = tuple[str, str, "bytes | None"]

# Timers (``dna.storage.Timers``) live in their actor's storage under this module. A
# timer's value opens with a fixed header the stores read to keep their due index:
# the due instant (unsigned big-endian microseconds since the Unix epoch, so byte
# order is time order) and an 8-byte token naming this setting of the timer.
TIMERS_MODULE = "dna.timers"
_HEADER = struct.Struct(">Q8s")
TIMER_HEADER_BYTES = _HEADER.size


def timer_header(value: bytes) -> tuple[int, bytes]:
    """``(due in microseconds since the epoch, token)`` of a stored timer value."""
    due, token = _HEADER.unpack_from(value)
    return due, token


@dataclass(slots=True)
class DueTimer:
    """One entry of a store's due index (``Store.due_timers``).

    ``due`` is in microseconds since the Unix epoch (an index may record a due time
    already past when written as the time of writing); ``token`` names the setting of
    the timer the entry was written for; ``cursor`` is store-private (where a
    listing continues after this entry).
    """

    actor: ActorId
    name: str
    due: int
    token: bytes
    cursor: Any = None


# One actor of the catalog: (its name, owner node id or None, epoch).
CatalogRow = tuple[ActorId, "str | None", int]


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
    """One row of the nodes table as a store reports it.

    ``alive`` is False exactly when the node's actors may be reclaimed (``state``
    ``"dead"``), True for ``"alive"`` and ``"suspect"``, None for ``"unknown"``.
    ``heartbeat_age``: seconds, on the observer's own monotonic clock, since the
    observer last saw the node's heartbeat counter move (None where liveness is
    a lock, or not known yet).
    """

    node_id: str
    address: str
    heartbeat: int
    draining: bool
    load: int = 0
    alive: bool | None = None  # None: not judged yet (a lease store's first sight)
    state: str = UNKNOWN  # ALIVE, SUSPECT, DEAD or UNKNOWN
    heartbeat_age: float | None = None  # seconds since its counter last moved, as seen here


class Store(abc.ABC):
    """What a node needs from a database. All methods are coroutines unless noted.

    A store is opened once by one node (``open``) and closed by it. Errors: a
    database that cannot be reached raises ``StoreUnavailable``; a fenced write
    raises ``StaleEpoch``; a live foreign owner raises ``NotOwner``; a commit
    whose outcome cannot be known raises ``CommitUnknown``.

    Everything a node, the command line or the bench may use is declared here,
    with its default; a backend overrides what differs.
    """

    #: short name used by the command line and in messages ("sqlite", "memory", "cql")
    kind: ClassVar[str] = "?"

    #: Liveness by lease: peers may reclaim this node's actors once its heartbeat
    #: counter has not moved for ``lease`` seconds of their clock. None: liveness
    #: is exact (a lock the OS drops when the process dies, an open client).
    lease: float | None = None

    #: Seconds between the store's own background heartbeats, or None when it
    #: runs none (lock stores; a lease store whose heartbeats the node drives).
    heartbeat_interval: float | None = None

    #: True: ownership is per name (``release`` lets a peer claim that one name at
    #: once), so names may be moved one by one (rebalancing). False: a name follows
    #: a lease on a group of names (CQL ``activation=slots``).
    per_actor_claims: bool = True

    #: Largest key (UTF-8 bytes) and value (bytes) one write may carry, and the
    #: largest commit (estimated bytes of every write): a node checks writes
    #: against them (``check_row``) before a commit. None: no limit.
    max_key_bytes: int | None = None
    max_value_bytes: int | None = None
    max_commit_bytes: int | None = None

    @property
    def last_heartbeat(self) -> float | None:
        """Loop time (``loop.time()``) at which the last heartbeat known to have
        succeeded was *sent*, or None when the store has no lease.

        The send time, not the time its answer came: a heartbeat sent before a
        pause (SIGSTOP, a blocked loop) and answered after it never makes a
        lease that lapsed during the pause look fresh. A node serves only while
        ``loop.time() - last_heartbeat`` is well under ``lease``.
        """
        return None

    @property
    def lease_term(self) -> int:
        """Grows each time this node's lease may have lapsed and was taken up
        again: a heartbeat succeeded, but its answer came more than ``lease``
        seconds after the previous successful one was sent. Peers may have reclaimed our actors in
        between, so a node drops every activation made under an older term
        before serving anything. Always 0 for stores without a lease."""
        return 0

    async def heartbeat(self, load: int | None = None) -> None:
        """Advance this node's heartbeat counter and publish ``load`` (its
        activation count, for ``dna status``) when given. Default: nothing."""
        return None

    @abc.abstractmethod
    async def set_draining(self, draining: bool = True) -> None:
        """Mark this node draining (or not): its actors become claimable by others."""

    def check_row(self, module: str, key: str, value: bytes | None) -> None:
        """Refuse one write this store could never commit, before it joins a batch.

        ``TypeError`` for a module or key that is not ``str`` or a value that is
        not bytes or None; ``ValueError`` for a key or module that is not valid
        UTF-8 text (a lone surrogate); ``TooLarge`` for a key or value over
        ``max_key_bytes`` / ``max_value_bytes``. Each names the limit. These
        failures are deterministic: retrying the same write fails the same way.
        """
        if not isinstance(module, str) or not isinstance(key, str):
            raise TypeError(
                f"storage module and key must be str, not {type(module).__name__} "
                f"and {type(key).__name__}"
            )
        if value is not None and not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"a stored value must be bytes or None, not {type(value).__name__}")
        try:
            kb = len(key.encode())
            module.encode()
        except UnicodeEncodeError as exc:
            raise ValueError(f"key {key!r} of module {module!r} is not valid text: {exc}") from None
        limit = self.max_key_bytes
        if limit is not None and kb > limit:
            raise TooLarge(f"key of {kb} bytes is over the {self.kind} store's limit of {limit}")
        limit = self.max_value_bytes
        if limit is not None and value is not None and len(value) > limit:
            raise TooLarge(
                f"value of {len(value)} bytes for key {key[:80]!r} is over the {self.kind} "
                f"store's limit of {limit} bytes"
            )

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

        All or nothing: ``StaleEpoch`` when fenced, ``CommitUnknown`` when the
        store cannot tell whether it applied, ``StoreError`` otherwise (nothing
        applied). Returns once the rows are durable.
        """

    @abc.abstractmethod
    async def read(self, claim: Claim, module: str, key: str) -> bytes | None:
        """The committed value of one key, or None."""

    async def read_many(
        self, claim: Claim, module: str, keys: builtins.list[str]
    ) -> builtins.list[bytes | None]:
        """The committed values of ``keys``, in order (None: absent). One read after
        another here; a store with round trips sends them at once."""
        return [await self.read(claim, module, key) for key in keys]

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

    @abc.abstractmethod
    async def owner_of(self, actor: ActorId) -> tuple[str | None, int]:
        """``(owner node id or None, epoch)`` as committed; for routing and tests."""

    @abc.abstractmethod
    async def nodes(self) -> builtins.list[NodeRecord]:
        """Every node row the store knows, with liveness as this node judges it."""

    # ------------------------------------------------------------ timers' due index

    @abc.abstractmethod
    async def due_timers(
        self, now: int, limit: int, after: DueTimer | None = None,
        types: Collection[str] | None = None,
    ) -> builtins.list[DueTimer]:
        """Up to ``limit`` entries of the due index with ``due <= now`` (microseconds
        since the epoch), in index order, continuing after ``after`` when given;
        only of actors whose type is in ``types`` when given (a node lists the types
        it serves: timers of a type no node loads cost the others' scans nothing).

        Every timer committed under ``TIMERS_MODULE`` (any actor, any owner) has an
        entry while it is pending. An entry may be stale (its timer since removed or
        reset: a spurious wake-up, never a lost timer); ``forget_timers`` drops those.
        A store may look only a bounded span past its own present (CQL: a day, one
        read per minute of due time); the scanner always asks for the present.
        """

    async def forget_timers(self, entries: builtins.list[DueTimer]) -> None:
        """Drop index entries known stale (their timer's token is no longer stored).
        Default: nothing (a store whose index is exact, kept in the commit)."""
        return None

    # ------------------------------------------------------------ the actor catalog

    @abc.abstractmethod
    async def destroy(self, claim: Claim) -> None:
        """Remove every stored row of ``claim.actor`` and its registration, atomically
        and only if ``claim`` is still current (``StaleEpoch`` otherwise).

        Afterwards the actor is unowned, absent from ``catalog`` and has no data;
        its epoch is kept (a fence tombstone), so the next claim starts a fresh
        incarnation at a higher epoch and no claim from before can ever commit.
        """

    @abc.abstractmethod
    async def catalog(
        self, type_name: str | None, namespace: str | None, after: str | None, limit: int
    ) -> tuple[builtins.list[CatalogRow], str | None]:
        """Up to ``limit`` actors that exist in storage (claimed at least once and
        not destroyed), of ``type_name`` and in ``namespace`` when given, after
        the cursor ``after``; with the cursor of the next page, None at the end.

        Cursors are opaque strings of this store kind. Every actor that exists
        for the whole walk is listed exactly once; one created or destroyed
        meanwhile may or may not be. A page may hold fewer than ``limit`` actors
        (even none) while the cursor is not None. ``ValueError`` for a cursor
        this store did not make.
        """

    @abc.abstractmethod
    async def dump(self, actor: ActorId, limit: int) -> builtins.list[Row] | None:
        """Up to ``limit`` committed rows ``(module, key, value)`` of ``actor``, in
        (module, key) order, read without a claim (for ``inspect``); None when the
        actor does not exist (never claimed, or destroyed)."""


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

"""``MemoryStore``: the Store contract in process memory, for tests and demos.

Nothing is durable. Several ``MemoryStore`` clients may share one database
(``MemoryStore.connect()``, or the same ``name``) and then behave like nodes
of one cluster: a node is alive exactly while its client is open.
"""

from __future__ import annotations

import builtins
import time
import weakref
from bisect import bisect_left, bisect_right, insort
from collections.abc import Collection
from itertools import islice

from ..errors import InterfaceError, NotOwner, StaleEpoch, StoreError
from . import _cursor
from .base import (
    ALIVE,
    DEAD,
    TIMER_HEADER_BYTES,
    TIMERS_MODULE,
    ActorId,
    CatalogRow,
    Claim,
    DueTimer,
    NodeRecord,
    Row,
    Store,
    timer_header,
)

__all__ = ["MemoryStore"]

# named databases, kept while some client refers to them
_NAMED: weakref.WeakValueDictionary[str, _MemoryDB] = weakref.WeakValueDictionary()


class _Owner:
    """One row of the ownership table."""

    __slots__ = ("claimed_at", "epoch", "handle", "owner")

    def __init__(self, handle: int) -> None:
        self.handle = handle  # the Claim.handle of every claim of this actor
        self.owner: str | None = None  # node id, None when released
        self.epoch = 0  # grows on every claim; commits are fenced by it
        self.claimed_at: float | None = None  # None: never claimed, or destroyed


class _Table:
    """One (actor, module) key space: values plus a sorted key list built on demand."""

    __slots__ = ("sorted_keys", "values")

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.sorted_keys: list[str] | None = None  # None: stale since a key came or went

    def keys_in_order(self) -> list[str]:
        keys = self.sorted_keys
        if keys is None:
            keys = self.sorted_keys = sorted(self.values)
        return keys


class _MemoryDB:
    """The shared state behind every client of one in-memory database."""

    def __init__(self) -> None:
        self.actors: dict[ActorId, _Owner] = {}  # ownership, by actor
        self.data: dict[tuple[int, str], _Table] = {}  # (handle, module) -> table
        self.nodes: dict[str, NodeRecord] = {}  # registered nodes, by id
        self.open: set[str] = set()  # node ids whose client is open: the live ones
        self.next_handle = 1
        self.by_handle: dict[int, ActorId] = {}  # claim handle -> actor
        # timers' due index, exact: sorted (due, handle, name, token), and each timer's entry
        self.due: list[tuple[int, int, str, bytes]] = []
        self.due_of: dict[tuple[int, str], tuple[int, int, str, bytes]] = {}

    def index_timer(self, handle: int, name: str, value: bytes | None) -> None:
        """Keep the due index in step with one committed timer write."""
        old = self.due_of.pop((handle, name), None)
        if old is not None:
            del self.due[bisect_left(self.due, old)]
        if value is not None:
            due, token = timer_header(value)
            entry = (due, handle, name, token)
            self.due_of[(handle, name)] = entry
            insort(self.due, entry)


class MemoryStore(Store):
    """An in-process store with the full Store semantics and no durability.

    ``db``: share the database of another client (see ``connect``); ``name``:
    share the database of every client created with the same name (while any
    of them exists). Neither: a new, private database. ``create=False`` with a
    ``name`` no live client uses: ``open`` raises ``StoreError``.

    Operations never suspend: each claim, commit or release is applied at
    once and atomically. ``commit`` is a plain coroutine method that
    subclasses may override (to hold or fail commits in tests).
    """

    kind = "memory"

    def __init__(
        self, db: _MemoryDB | None = None, *, name: str | None = None, create: bool = True
    ) -> None:
        self._missing = False  # create=False named a database that does not exist
        if db is None and name is not None:
            db = _NAMED.get(name)
            if db is None and not create:
                self._missing = True
            elif db is None:
                db = _NAMED[name] = _MemoryDB()
        self._db = db if db is not None else _MemoryDB()  # shared by connect()ed clients
        self.node_id: str | None = None  # set by open

    def connect(self) -> MemoryStore:
        """A new, unopened client of the same database (another node's view)."""
        return MemoryStore(self._db)

    def __repr__(self) -> str:
        state = f"open as {self.node_id}" if self.node_id else "closed"
        return f"MemoryStore({state})"

    def _me(self) -> str:
        me = self.node_id
        if me is None:
            raise InterfaceError("MemoryStore is not open")
        return me

    # ------------------------------------------------------------ lifecycle

    async def open(self, node_id: str, address: str = "") -> None:
        if self.node_id is not None:
            raise InterfaceError(f"MemoryStore is already open as {self.node_id}")
        if self._missing:
            raise StoreError("MemoryStore: no in-memory database of that name exists")
        db = self._db
        if node_id in db.open:
            raise StoreError(f"MemoryStore: node id {node_id!r} is already open")
        db.open.add(node_id)
        db.nodes[node_id] = NodeRecord(node_id, address, 0, False, 0)
        self.node_id = node_id

    async def close(self) -> None:
        """Unregister this node; its actors become claimable. Idempotent."""
        me, self.node_id = self.node_id, None
        if me is not None:
            self._db.open.discard(me)
            self._db.nodes.pop(me, None)

    # ------------------------------------------------------------ ownership

    async def claim(self, actor: ActorId) -> Claim:
        me = self._me()
        db = self._db
        row = db.actors.get(actor)
        if row is None:
            row = db.actors[actor] = _Owner(db.next_handle)
            db.by_handle[row.handle] = actor
            db.next_handle += 1
        owner = row.owner
        if owner is not None and owner != me and owner in db.open:
            rec = db.nodes.get(owner)
            if rec is None or not rec.draining:
                raise NotOwner(f"{actor} is owned by live node {owner}", owner=owner)
        row.owner = me
        row.epoch += 1
        row.claimed_at = time.time()
        return Claim(actor, me, row.epoch, row.handle)

    async def release(self, claim: Claim) -> None:
        """Give up ``claim`` (the epoch stays); ``StaleEpoch`` if it is no longer current."""
        self._me()
        row = self._current(claim, "release")
        row.owner = None

    def _current(self, claim: Claim, doing: str) -> _Owner:
        row = self._db.actors.get(claim.actor)
        if row is None or row.epoch != claim.epoch or row.owner != claim.node_id:
            now = (row.epoch, row.owner) if row is not None else (None, None)
            raise StaleEpoch(
                f"{doing} of {claim.actor} at epoch {claim.epoch} was fenced "
                f"(now epoch {now[0]}, owner {now[1]})"
            )
        return row

    async def owner_of(self, actor: ActorId) -> tuple[str | None, int]:
        self._me()
        row = self._db.actors.get(actor)
        return (None, 0) if row is None else (row.owner, row.epoch)

    # ------------------------------------------------------------ data

    async def commit(self, claim: Claim, rows: list[Row]) -> None:
        self._me()
        self._current(claim, "commit")
        # validate everything before touching anything: all or nothing
        last: dict[tuple[str, str], bytes | None] = {}
        for row in rows:
            module, key, value = row
            if not isinstance(module, str) or not isinstance(key, str):
                raise StoreError(f"commit of {claim.actor}: module and key must be str: {row!r}")
            if value is not None:
                if not isinstance(value, (bytes, bytearray, memoryview)):
                    raise StoreError(f"commit of {claim.actor}: value must be bytes: {row!r}")
                value = bytes(value)
                if module == TIMERS_MODULE and len(value) < TIMER_HEADER_BYTES:
                    raise StoreError(f"commit of {claim.actor}: malformed timer {key!r}")
            last[(module, key)] = value
        data, handle = self._db.data, claim.handle
        for (module, key), value in last.items():
            if module == TIMERS_MODULE:
                self._db.index_timer(handle, key, value)
            table = data.get((handle, module))
            if table is None:
                if value is None:
                    continue
                table = data[(handle, module)] = _Table()
            values = table.values
            if value is None:
                if values.pop(key, None) is not None:
                    table.sorted_keys = None
            else:
                if key not in values:
                    table.sorted_keys = None
                values[key] = value

    async def read(self, claim: Claim, module: str, key: str) -> bytes | None:
        self._me()
        table = self._db.data.get((claim.handle, module))
        return None if table is None else table.values.get(key)

    async def list(
        self,
        claim: Claim,
        module: str,
        prefix: str = "",
        limit: int = 100,
        start_after: str | None = None,
    ) -> list[tuple[str, bytes]]:
        self._me()
        table = self._db.data.get((claim.handle, module))
        if table is None or limit <= 0:
            return []
        keys = table.keys_in_order()
        if start_after is not None and start_after >= prefix:
            i = bisect_right(keys, start_after)
        else:
            i = bisect_left(keys, prefix)
        values = table.values
        out: list[tuple[str, bytes]] = []
        for k in islice(keys, i, None):
            if not k.startswith(prefix) or len(out) >= limit:
                break
            out.append((k, values[k]))
        return out

    # ------------------------------------------------------------ timers

    async def due_timers(
        self, now: int, limit: int, after: DueTimer | None = None,
        types: Collection[str] | None = None,
    ) -> builtins.list[DueTimer]:
        """Timers due by ``now`` from the exact in-memory index (see ``Store``)."""
        self._me()
        db = self._db
        due = db.due
        i = 0 if after is None else bisect_right(due, after.cursor)
        out: list[DueTimer] = []
        for entry in islice(due, i, None):
            if entry[0] > now or len(out) >= limit:
                break
            aid = db.by_handle[entry[1]]
            if types is None or aid.type_name in types:
                out.append(DueTimer(aid, entry[2], entry[0], entry[3], entry))
        return out

    # ------------------------------------------------------------ nodes

    async def nodes(self) -> builtins.list[NodeRecord]:
        """Every registered node; ``alive`` is exact (its client is open)."""
        self._me()
        db = self._db
        out = []
        for r in sorted(db.nodes.values(), key=lambda r: r.node_id):
            alive = r.node_id in db.open
            state = ALIVE if alive else DEAD
            out.append(
                NodeRecord(r.node_id, r.address, r.heartbeat, r.draining, r.load, alive, state)
            )
        return out

    async def set_draining(self, draining: bool = True) -> None:
        """Mark this node draining: its actors become claimable by other nodes."""
        self._db.nodes[self._me()].draining = draining

    async def heartbeat(self, load: int | None = None) -> None:
        """Advance this node's heartbeat counter (and record its load)."""
        rec = self._db.nodes[self._me()]
        rec.heartbeat += 1
        if load is not None:
            rec.load = load

    # ------------------------------------------------------------ the actor catalog

    async def destroy(self, claim: Claim) -> None:
        """Drop every row of the actor and its registration (the epoch stays)."""
        self._me()
        row = self._current(claim, "destroy")
        for module in [m for h, m in self._db.data if h == claim.handle]:
            table = self._db.data.pop((claim.handle, module))
            if module == TIMERS_MODULE:  # the due index follows the timers
                for name in table.values:
                    self._db.index_timer(claim.handle, name, None)
        row.owner = None
        row.claimed_at = None

    async def catalog(
        self, type_name: str | None, namespace: str | None, after: str | None, limit: int
    ) -> tuple[builtins.list[CatalogRow], str | None]:
        """Actors in (type_name, namespace, key) order; a sort per page (tests, demos)."""
        self._me()
        start = _cursor.decode(after) if after is not None else None
        names = sorted(
            (a.type_name, a.namespace, a.key)
            for a, row in self._db.actors.items()
            if row.claimed_at is not None
            and (type_name is None or a.type_name == type_name)
            and (namespace is None or a.namespace == namespace)
        )
        i = bisect_right(names, start) if start is not None else 0
        out: builtins.list[CatalogRow] = []
        for t, ns, k in names[i:i + limit]:
            aid = ActorId(ns, t, k)
            row = self._db.actors[aid]
            out.append((aid, row.owner, row.epoch))
        more = len(out) == limit and i + limit < len(names)
        return out, _cursor.encode(out[-1][0]) if more else None

    async def dump(self, actor: ActorId, limit: int) -> builtins.list[Row] | None:
        self._me()
        row = self._db.actors.get(actor)
        if row is None or row.claimed_at is None:
            return None
        out: builtins.list[Row] = []
        tables = sorted((m, t) for (h, m), t in self._db.data.items() if h == row.handle)
        for module, table in tables:
            for k in table.keys_in_order():
                if len(out) >= limit:
                    return out
                out.append((module, k, table.values[k]))
        return out

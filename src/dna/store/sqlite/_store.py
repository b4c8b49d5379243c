"""``SQLiteStore``: the embedded default store, one file shared by every node
process of one machine.

Writes (claims, commits, releases) go to one writer thread per open store,
which applies whatever is queued in one transaction (group commit; see
``_writer``). Reads run on the event-loop thread on a second
connection. Node liveness comes from per-node advisory lock files (see
``_locks``): a node is alive exactly while its process holds its lock.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import Collection
from typing import Any

from ...errors import InterfaceError
from .._gil import SwitchInterval
from ..base import (
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
    prefix_end,
)
from . import _catalog
from . import _locks as locks
from ._c import Connection, SqliteError
from ._journal import Journal
from ._schema import connect, map_error
from ._writer import Writer

__all__ = ["SQLiteStore"]

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_COMMIT = ("apply", "log")
_READ = "SELECT v FROM data WHERE actor = ? AND module = ? AND k = ?"
_OWNER = "SELECT owner, epoch FROM actors WHERE namespace = ? AND type_name = ? AND key = ?"
# Timers due by a bound instant, in the order of the partial index data_timer_due.
# CROSS JOIN makes data the outer loop: the plan walks that index from the cursor's
# instant to the bound and stops at LIMIT. A plain JOIN let the planner start from
# the actors of the listed types (an index on type_name) and sort every timer they
# have, due or not, in a temporary B-tree on each round. The cursor's instant is
# repeated as a plain lower bound, because the planner does not bound an index range
# by a row value.
_DUE = (
    "SELECT d.actor, d.k, d.v, a.namespace, a.type_name, a.key FROM data d "
    f"CROSS JOIN actors a ON a.id = d.actor WHERE d.module = '{TIMERS_MODULE}' "
    "AND substr(d.v, 1, 8) <= ? {after}{types}ORDER BY substr(d.v, 1, 8), d.actor, d.k LIMIT ?"
)
_AFTER = "AND substr(d.v, 1, 8) >= ? AND (substr(d.v, 1, 8), d.actor, d.k) > (?, ?, ?) "


def _due_sql(after: bool, ntypes: int | None) -> str:
    """The listing of due timers, after a cursor or not, of ``ntypes`` types or all."""
    types = "" if ntypes is None else f"AND a.type_name IN ({', '.join('?' * ntypes)}) "
    return _DUE.format(after=_AFTER if after else "", types=types)


_HAS_LOG = (
    "SELECT 1 FROM log WHERE actor = "
    "(SELECT id FROM actors WHERE namespace = ? AND type_name = ? AND key = ?) LIMIT 1"
)
_NODES = "SELECT node_id, address, heartbeat, draining, load FROM nodes ORDER BY node_id"


class SQLiteStore(Store):
    """A DNA store in one SQLite file (WAL mode), for one machine.

    Several node processes (or several stores in one process) may open the
    same file; at most one of them owns an actor at a time, and a node that
    dies, even by ``kill -9``, loses its actors at once: the next claim takes
    them over with a higher epoch, no lease to wait out.

    ``synchronous``: SQLite's ``PRAGMA synchronous`` for commits. ``"full"``
    (default) means a commit that returned is on disk; ``"normal"`` may lose
    the last commits on power loss (never on a process crash).
    ``busy_timeout_ms``: how long a write waits for another process's
    transaction before failing with ``StoreUnavailable``. ``create``: False
    makes ``open`` refuse a file that does not exist (``StoreError``, nothing
    created) instead of creating a database there.

    A file that is not a DNA database (random bytes, another application's
    SQLite database) is refused by ``open`` with ``StoreError`` and left
    untouched. A database file removed or made read-only while open makes
    commits fail with ``StoreUnavailable``, applying nothing; commits work
    again once the file is back or writable.

    Reads (``read``, ``list``, ``owner_of``, ``nodes``) run directly on the
    event-loop thread, on a read connection of their own: in WAL mode readers
    never wait for the writer, and a point read from the page cache takes
    microseconds, less than a thread hop. Each read is its own read
    transaction, so it sees every claim and commit that returned before it
    started.

    A process stopped (SIGSTOP, a debugger) while it holds the write
    transaction holds the database's write lock, and a stopped node still holds
    its liveness lock, so it is alive to its peers. Until it is continued or
    killed, every other node's claim and commit fails with the retryable
    ``StoreUnavailable`` ("locked ... past the busy timeout") after
    ``busy_timeout_ms``, at most twice that for one queued behind another
    group, and applies nothing; reads go on unblocked (WAL).

    Liveness is keyed by the database file's real path, so processes that open
    one file through a symlink and through its own path see each other.
    Processes opening a fresh file at the same moment all succeed: one creates
    the schema, the others wait for it (up to ``busy_timeout_ms``).

    ``commit`` hands ``rows`` to the writer thread: do not change the list
    until the commit returns. A cancelled ``commit`` may still be applied.

    ``commit``: ``"apply"`` (default) inserts every row into the data table
    before a commit returns. ``"log"`` appends the commit's rows as one record
    to a commit log in the same file and returns once that is durable (as
    ``synchronous`` says); the writer thread applies the log to the data table
    in transactions of about ``apply_rows`` rows: when it has had no work for
    ``apply_idle_ms`` (None: not for idleness); whenever no commit waits once
    the log holds more than half of ``log_max_rows`` rows; and before any
    further commit while it holds more than ``log_max_rows`` (commits wait:
    the log is bounded). Reads of an actor apply its records first; a claim, by any
    process on either path, applies the actor's records before it is granted,
    so a node killed with unapplied records loses none of them. Timer rows are
    applied at once (the due index stays exact). See ``_journal``.
    """

    kind = "sqlite"
    # SQLite's own limit is SQLITE_MAX_LENGTH (10^9 bytes) per row; keys are held to
    # CQL's 65,535 so an application moved to CQL meets no new failure
    max_key_bytes = 65_535
    max_value_bytes = 1_000_000_000 - 128 * 1024  # a row: its key, value and header

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "full",
        busy_timeout_ms: int = 5000,
        switch_interval: float | None = 0.001,
        create: bool = True,
        commit: str = "apply",
        log_max_rows: int = 2_000_000,
        apply_rows: int = 10_000,
        apply_idle_ms: float | None = 50.0,
    ) -> None:
        if commit not in _COMMIT:
            raise ValueError(f"commit must be one of {', '.join(_COMMIT)}")
        if log_max_rows < 1 or apply_rows < 1:
            raise ValueError("log_max_rows and apply_rows must be >= 1")
        if apply_idle_ms is not None and apply_idle_ms < 0:
            raise ValueError("apply_idle_ms must be >= 0 or None")
        self.commit_path = commit  # "apply" or "log"
        self.log_max_rows = log_max_rows
        self.apply_rows = apply_rows
        self.apply_idle_ms = apply_idle_ms
        if str(synchronous).upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        if busy_timeout_ms < 0:
            raise ValueError("busy_timeout_ms must be >= 0")
        self.path = os.fspath(path)  # the database file
        self.synchronous = synchronous.upper()
        self.busy_timeout_ms = busy_timeout_ms
        self.create = create  # False: open refuses a missing or empty file
        if switch_interval is not None and not switch_interval > 0:
            raise ValueError("switch_interval must be > 0 or None")
        # The writer thread takes the GIL back a few times per commit; at CPython's
        # default 5 ms switch interval each take can wait out a busy event loop.
        # While open, the interval is at most this (None: leave it alone).
        self.switch_interval = switch_interval
        self._switch = SwitchInterval()
        self.node_id: str | None = None  # set by open
        self._writer: Writer | None = None  # the writer thread, while open
        self._reader: Connection | None = None  # reads, on the loop thread
        self._reader_gen = 0  # the writer's file generation the reader is on
        self._journal: Journal | None = None  # the log-first state of the last open

    async def apply_log(self) -> int:
        """Apply the whole commit log to the data table now (``commit="log"``; a no-op
        on the apply path) and return the rows applied; commits wait meanwhile."""
        writer = self._w()
        applied: int = await writer.submit(writer.do_drain, (), solo=True)
        return applied

    def log_stats(self) -> dict[str, float]:
        """The commit log's figures (``commit="log"``; also after close): rows in the
        log (backlog), rows applied by this store and the seconds its applier
        transactions took. Zero on the apply path."""
        j = self._journal
        return {"backlog": j.backlog if j else 0, "applied": j.applied if j else 0,
                "apply_seconds": j.apply_seconds if j else 0.0}

    def __repr__(self) -> str:
        state = f"open as {self.node_id}" if self._writer else "closed"
        return f"SQLiteStore({self.path!r}, {state})"

    # ------------------------------------------------------------ lifecycle

    async def open(self, node_id: str, address: str = "") -> None:
        if self._writer is not None:
            raise InterfaceError(f"SQLite store {self.path} is already open")
        journal = None
        if self.commit_path == "log":
            journal = Journal(self.log_max_rows, self.apply_rows)
        idle = None if self.apply_idle_ms is None else self.apply_idle_ms / 1000
        self._journal = journal
        writer = Writer(self.path, node_id, self.synchronous, self.busy_timeout_ms, self.create,
                        journal, idle)
        writer.start()
        try:
            await writer.submit(writer.do_open, (address,), solo=True)
            self._switch.lower(self.switch_interval)
        except asyncio.CancelledError:  # it may still open: close it behind our back
            writer.submit(writer.do_close, (), solo=True).add_done_callback(_swallow)
            raise
        # on failure do_open has already stopped the thread and dropped the lock
        try:
            self._reader = self._open_reader()
        except BaseException:
            await writer.submit(writer.do_close, (), solo=True)
            raise
        self._reader_gen = 0
        self._writer = writer
        self.node_id = node_id

    async def close(self) -> None:
        """Finish every queued write, unregister, drop the node lock. Idempotent."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._switch.restore()
        try:
            await writer.submit(writer.do_close, (), solo=True)
        finally:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _open_reader(self) -> Connection:
        # reads keep the GIL: a point read takes microseconds, while handing the
        # GIL to the writer thread and back may cost the loop a switch interval
        conn = connect(self.path, self.busy_timeout_ms, create=False, release_gil=False)
        try:
            conn.execute("PRAGMA query_only = ON")
        except SqliteError as exc:
            conn.close()
            raise map_error(exc, self.path, "opening the read connection") from None
        return conn

    def _w(self) -> Writer:
        writer = self._writer
        if writer is None:
            raise InterfaceError(f"SQLite store {self.path} is not open")
        return writer

    def _read(self, sql: str, params: tuple[Any, ...], doing: str) -> list[Any]:
        """Every row of one query on the read connection (a fresh read transaction)."""
        writer = self._w()
        try:
            if self._reader_gen != writer.generation or self._reader is None:
                # the writer reopened a replaced file: follow it
                old, self._reader = self._reader, None
                if old is not None:
                    old.close()
                self._reader = self._open_reader()
                self._reader_gen = writer.generation
            return self._reader.execute(sql, params)
        except SqliteError as exc:
            raise map_error(exc, self.path, doing) from None

    # ------------------------------------------------------------ ownership

    async def claim(self, actor: ActorId) -> Claim:
        writer = self._w()
        claim: Claim = await writer.submit(writer.claim, (actor,))
        return claim

    async def release(self, claim: Claim) -> None:
        """Give up ``claim`` (owner becomes NULL, the epoch stays, so the next
        claim gets epoch + 1). ``StaleEpoch`` if it is no longer current."""
        writer = self._w()
        await writer.submit(writer.release, (claim,))

    async def owner_of(self, actor: ActorId) -> tuple[str | None, int]:
        got = self._read(_OWNER, (actor.namespace, actor.type_name, actor.key), "owner_of")
        if not got:
            return (None, 0)
        return (got[0][0], int(got[0][1]))

    # ------------------------------------------------------------ data

    async def commit(self, claim: Claim, rows: list[Row]) -> None:
        writer = self._w()
        await writer.submit(writer.commit, (claim, rows), len(rows) + 1)

    async def _sync(self, handle: int) -> None:
        """Apply the actor's unapplied records (ours: we own it) before reading it."""
        writer = self._w()
        if writer.journal is not None and writer.journal.has_pending(handle):
            await writer.submit(writer.sync_actor, (handle,))

    async def read(self, claim: Claim, module: str, key: str) -> bytes | None:
        await self._sync(claim.handle)
        got = self._read(_READ, (claim.handle, module, key), f"reading {claim.actor}")
        return got[0][0] if got else None

    async def list(
        self,
        claim: Claim,
        module: str,
        prefix: str = "",
        limit: int = 100,
        start_after: str | None = None,
    ) -> list[tuple[str, bytes]]:
        if limit <= 0:
            return []
        await self._sync(claim.handle)
        sql = "SELECT k, v FROM data WHERE actor = ? AND module = ?"
        params: list[Any] = [claim.handle, module]
        if start_after is not None and start_after >= prefix:
            sql += " AND k > ?"
            params.append(start_after)
        elif prefix:
            sql += " AND k >= ?"
            params.append(prefix)
        end = prefix_end(prefix)
        if end is not None:
            sql += " AND k < ?"
            params.append(end)
        sql += " ORDER BY k LIMIT ?"
        params.append(limit)
        got = self._read(sql, tuple(params), f"listing {claim.actor}")
        if prefix and end is None:  # a prefix of only U+10FFFF: filter here
            got = [r for r in got if r[0].startswith(prefix)]
        return got

    # ------------------------------------------------------------ timers

    async def due_timers(
        self, now: int, limit: int, after: DueTimer | None = None,
        types: Collection[str] | None = None,
    ) -> builtins.list[DueTimer]:
        """Timers due by ``now``, from the partial index on the data table (exact:
        a timer and its entry are one row, so no entry is ever stale)."""
        if limit <= 0 or (types is not None and not types):
            return []
        bound = now.to_bytes(8, "big")
        sql = _due_sql(after is not None, None if types is None else len(types))
        params = (bound, *((after.cursor[0], *after.cursor) if after is not None else ()),
                  *(sorted(types) if types is not None else ()), limit)
        got = self._read(sql, params, "listing due timers")
        out = []
        for handle, name, value, ns, tn, key in got:
            if len(value) < TIMER_HEADER_BYTES:
                continue  # not written by Timers: nothing to fire
            head = value[:8]  # the header (timer_header), read in place
            out.append(DueTimer(ActorId(ns, tn, key), name, int.from_bytes(head, "big"),
                                value[8:TIMER_HEADER_BYTES], (head, handle, name)))
        return out

    # ------------------------------------------------------------ nodes

    async def nodes(self) -> builtins.list[NodeRecord]:
        """Every registered node; ``alive`` comes from its lock (exact on one machine)."""
        out = []
        for node_id, address, heartbeat, draining, load in self._read(_NODES, (), "nodes"):
            if node_id == self.node_id:
                alive = True
            else:
                fd = locks.probe(self._w().lock_base, node_id)
                alive = fd is None
                if fd is not None:
                    locks.unlock(fd)
            state = ALIVE if alive else DEAD
            out.append(NodeRecord(node_id, address, heartbeat, bool(draining), load, alive, state))
        return out

    async def set_draining(self, draining: bool = True) -> None:
        """Mark this node draining: its actors become claimable by other nodes."""
        writer = self._w()
        await writer.submit(writer.do_set_node, (draining, None, False), solo=True)

    async def heartbeat(self, load: int | None = None) -> None:
        """Advance this node's heartbeat counter (and record its load)."""
        writer = self._w()
        await writer.submit(writer.do_set_node, (None, load, True), solo=True)


    # ------------------------------------------------------------ the actor catalog

    async def destroy(self, claim: Claim) -> None:
        """Drop the actor's data and registration in one fenced transaction."""
        writer = self._w()
        await writer.submit(writer.destroy, (claim,))

    async def catalog(
        self, type_name: str | None, namespace: str | None, after: str | None, limit: int
    ) -> tuple[builtins.list[CatalogRow], str | None]:
        """A page in (type_name, namespace, key) order off the catalog index."""
        if limit <= 0:
            return [], after
        query = _catalog.catalog_query(type_name, namespace, after, limit)
        if query is None:
            return [], None
        return _catalog.page(self._read(*query, "listing actors"), limit)

    async def dump(self, actor: ActorId, limit: int) -> builtins.list[Row] | None:
        writer = self._w()
        # unapplied records of the actor (ours, or of a live node on the log-first path)
        if self._read(_HAS_LOG, (actor.namespace, actor.type_name, actor.key), "dump"):
            await writer.submit(writer.sync_named, (actor,))
        sql, params = _catalog.dump_query(actor, max(limit, 1))  # a row tells it exists
        rows = _catalog.as_rows(self._read(sql, params, f"reading {actor}"))
        return None if rows is None else rows[:max(limit, 0)]


def _swallow(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()

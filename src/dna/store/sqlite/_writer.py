"""The SQLite store's writer thread: the one owner of the write connection.

Coroutines hand work to it through ``Writer.submit`` and await an asyncio
future; the thread resolves futures with ``loop.call_soon_threadsafe``, once
per group for every future of that group. That is the store's only bridge
between asyncio and a thread.

Group commit: each time it wakes, the thread takes everything queued (up to
``MAX_GROUP_WEIGHT`` rows) and applies it in ONE transaction, so one fsync
covers many claims and commits. Every commit runs inside its own SAVEPOINT
and is fenced first: a stale or failing commit is undone alone while the
rest of the group commits. A fault of the transaction itself (disk full,
file read-only or removed, busy past the timeout) fails the whole group and
leaves nothing of it applied; the thread then carries on with the next group.
A group refused for a full disk is tried once more after a WAL checkpoint, so
claims (rows updated in place) still go through: reading an actor keeps
working on a full disk, while writes that need room fail retryably.
"""

from __future__ import annotations

import asyncio
import os
import queue
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ...errors import DNAError, InterfaceError, NotOwner, StaleEpoch, StoreError, StoreUnavailable
from ..base import ActorId, Claim, Row
from . import _c as sq
from . import _catalog
from . import _locks as locks
from ._c import Connection, SqliteError
from ._catalog import INDEX as CATALOG_INDEX
from ._journal import Effect, Journal, replay_actor
from ._schema import map_error, open_database, savepoint

__all__ = ["Writer"]

MAX_GROUP_WEIGHT = 500_000  # rows (claims count 1) per transaction; more waits for the next

_SEL_EPOCH = "SELECT epoch, owner FROM actors WHERE id = ?"
_SEL_ACTOR = "SELECT id, owner, epoch FROM actors WHERE namespace = ? AND type_name = ? AND key = ?"
_INS_ACTOR = (
    "INSERT INTO actors (namespace, type_name, key, owner, epoch, claimed_at) "
    "VALUES (?, ?, ?, ?, 1, ?)"
)
_UPD_ACTOR = "UPDATE actors SET owner = ?, epoch = ?, claimed_at = ? WHERE id = ?"
_UPSERT = (
    "INSERT INTO data (actor, module, k, v) VALUES (?, ?, ?, ?) "
    "ON CONFLICT DO UPDATE SET v = excluded.v"
)
_DELETE = "DELETE FROM data WHERE actor = ? AND module = ? AND k = ?"

# one unit of work: (function, arguments, future, weight, solo); solo runs outside a group
_Item = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]", int, bool]
_Result = tuple["asyncio.Future[Any]", Any, "BaseException | None"]


def _is_full(exc: BaseException) -> bool:
    """SQLITE_FULL: the disk (or the database's size limit) is full."""
    return isinstance(exc, SqliteError) and exc.primary == sq.FULL


class _GroupFailed(Exception):
    """The group's transaction is lost; carries the mapped error for every item."""

    def __init__(self, err: StoreError) -> None:
        super().__init__(str(err))
        self.err = err


class Writer:
    """The writer thread of one open ``SQLiteStore`` (one node)."""

    def __init__(
        self, path: str, node_id: str, synchronous: str, busy_timeout_ms: int, create: bool = True,
        journal: Journal | None = None, apply_idle_s: float | None = 0.05,
    ) -> None:
        self.path = path  # the database file
        self.node_id = node_id  # the node this store serves
        self.synchronous = synchronous  # PRAGMA synchronous of the write connection
        self.busy_timeout_ms = busy_timeout_ms
        self.create = create  # whether open may create the database
        self.generation = 0  # grows when the file at ``path`` was replaced and reopened
        self.transactions = 0  # group transactions committed (statistics, tests)
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()  # loop -> thread
        self._conn: Connection | None = None  # the write connection (thread only)
        self._ident: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the open file
        self._lock_fd = -1  # our node's liveness lock, held while open
        self.lock_base = path  # the file's real path: where every node's lock lives
        self._dead: dict[str, int] = {}  # owners found dead in this group -> their lock fd
        self._verdicts: dict[str, bool] = {}  # owner -> reclaimable, within one group
        self._stopped = False
        self._full = False  # the last group failed whole with SQLITE_FULL
        # the log-first path (commit="log"): None applies every commit in place
        self.journal = journal
        # the applier runs once no work came for this long (None: only past the bound)
        self.apply_idle_s = apply_idle_s
        self._effects: list[Effect] = []  # journal effects of the open transaction
        self._thread = threading.Thread(
            target=self._run, name=f"dna-sqlite-writer {path}", daemon=True
        )

    # ------------------------------------------------------------ event-loop side

    def start(self) -> None:
        self._thread.start()

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], weight: int = 1, solo: bool = False
    ) -> asyncio.Future[Any]:
        """Queue ``fn(*args)`` for the writer thread; the future gets its result."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put((fn, args, fut, weight, solo))
        return fut

    def join(self) -> None:
        self._thread.join()

    # ------------------------------------------------------------ thread side

    def _run(self) -> None:
        pending: deque[_Item] = deque()
        get, get_nowait = self._queue.get, self._queue.get_nowait
        journal = self.journal
        idle = self.apply_idle_s  # how long to wait for work before applying
        while not self._stopped:
            if not pending:
                if journal is not None and journal.eager() and journal.apply_error is None:
                    try:  # past half the bound: apply whenever no work waits
                        pending.append(get_nowait())
                    except queue.Empty:
                        self._apply_log()
                        continue
                elif journal is None or not journal.backlog or idle is None:
                    pending.append(get())
                else:
                    try:  # idle with a backlog: apply some of it
                        pending.append(get(timeout=idle) if idle else get_nowait())
                        idle = self.apply_idle_s
                    except queue.Empty:
                        self._apply_log()  # and go on at once while no work comes
                        idle = 0.0 if journal.apply_error is None else self.apply_idle_s
                        continue
            while True:
                try:
                    pending.append(get_nowait())
                except queue.Empty:
                    break
            first = pending[0]
            if journal is not None and journal.over() and not first[4]:
                self._apply_log()  # writers wait while the applier lags past the bound
                if journal.apply_error is None:
                    continue  # (when applying fails, log-first commits fail retryably)
            if first[4]:  # solo: open, close, node-row updates
                pending.popleft()
                _deliver([self._call(first)])
                continue
            group = [pending.popleft()]
            weight = first[3]
            while pending and not pending[0][4] and weight < MAX_GROUP_WEIGHT:
                weight += pending[0][3]
                group.append(pending.popleft())
            try:
                results = self._apply(group)
                if self._full and self._checkpoint():  # room in the WAL again: once more
                    results = self._apply(group)
            except BaseException as exc:  # a bug here must not wedge every caller
                err = map_error(exc, self.path, "applying a group")
                results = [(it[2], None, err) for it in group]
            _deliver(results)
        while True:  # submitted after close: refuse, never leave a caller hanging
            try:
                pending.append(get_nowait())
            except queue.Empty:
                break
        closed = InterfaceError(f"SQLite store {self.path} is closed")
        _deliver([(it[2], None, closed) for it in pending])

    def _call(self, item: _Item) -> _Result:
        fn, args, fut, _, _ = item
        try:
            return (fut, fn(*args), None)
        except BaseException as exc:
            return (fut, None, map_error(exc, self.path, "the operation"))

    def _apply(self, group: list[_Item]) -> list[_Result]:
        """One transaction for ``group``; each item gets its own result."""
        results: list[_Result] = []
        self._full = False
        self._effects = []
        try:
            conn = self._begin()
        except Exception as exc:
            err = map_error(exc, self.path, "starting a transaction")
            return [(it[2], None, err) for it in group]
        try:
            if self.journal is not None and self.journal.eager():
                self._apply_in_group(conn)  # one fsync for the applier and the group
            for fn, args, fut, _, _ in group:
                try:
                    results.append((fut, fn(conn, *args), None))
                except DNAError as exc:  # fenced, not owner: that item alone
                    results.append((fut, None, exc))
                except Exception as exc:
                    if not conn.in_transaction:  # SQLite rolled the whole transaction back
                        self._full = _is_full(exc)
                        raise _GroupFailed(map_error(exc, self.path, "the transaction")) from None
                    results.append((fut, None, map_error(exc, self.path, "the commit")))
            self._forget_dead_nodes(conn)
            conn.execute("COMMIT", release_gil=True)  # the fsync
            self.transactions += 1
            if self.journal is not None:  # before any result: a read after an ack sees it
                self.journal.publish(self._effects)
        except BaseException as exc:
            self._full = self._full or _is_full(exc)
            err = exc.err if isinstance(exc, _GroupFailed) else map_error(
                exc, self.path, "committing the transaction"
            )
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except SqliteError:
                    pass
            done = {id(r[0]): r for r in results if r[2] is not None}
            results = [done.get(id(it[2])) or (it[2], None, err) for it in group]
        finally:
            self._release_dead()
        return results

    def _apply_in_group(self, conn: Connection) -> None:
        """Past half the bound: apply a chunk of the log first in the group's own
        transaction (its own savepoint: a failure leaves the group to go on)."""
        journal = self.journal
        assert journal is not None
        t0 = time.perf_counter()
        mark = len(self._effects)
        conn.execute("SAVEPOINT dna_apply")
        try:
            journal.apply_some(conn, _UPSERT, _DELETE, self._effects)
        except DNAError:
            raise
        except Exception as exc:
            if not conn.in_transaction:
                raise  # the transaction itself is lost: the group fails whole
            conn.execute("ROLLBACK TO dna_apply; RELEASE dna_apply")
            del self._effects[mark:]
            journal.apply_error = exc
            return
        conn.execute("RELEASE dna_apply")
        journal.apply_error = None
        journal.apply_seconds += time.perf_counter() - t0

    def _apply_log(self) -> None:
        """One applier transaction: the oldest records of the log into ``data``."""
        journal = self.journal
        assert journal is not None
        effects: list[Effect] = []
        t0 = time.perf_counter()
        try:
            conn = self._begin()
        except Exception as exc:
            journal.apply_error = exc
            time.sleep(0.01)  # the file is locked or gone: do not spin on it
            return
        try:
            journal.apply_some(conn, _UPSERT, _DELETE, effects)
            conn.execute("COMMIT", release_gil=True)
        except BaseException as exc:
            journal.apply_error = exc
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except SqliteError:
                    pass
            return
        journal.apply_error = None
        journal.publish(effects)
        journal.apply_seconds += time.perf_counter() - t0

    def do_drain(self) -> int:
        """Apply the whole log now (one transaction per ``apply_rows``); the rows applied."""
        journal = self.journal
        if journal is None:
            return 0
        before = journal.applied
        journal.backlog = max(journal.backlog, 1)  # records of other processes count too
        while journal.backlog:
            self._apply_log()
            if journal.apply_error is not None:
                raise journal.apply_error
        return journal.applied - before

    def _checkpoint(self) -> bool:
        """After SQLITE_FULL: copy the WAL into the database so that the next transaction
        writes over the WAL's start instead of growing it. A claim (one row updated in
        place) then needs no new disk space: reads of actors keep working on a full
        disk. True when the checkpoint ran."""
        if self._conn is None:
            return False
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except SqliteError:
            return False
        return True

    def _begin(self) -> Connection:
        """BEGIN IMMEDIATE on a file that is still the one we opened and writable."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StoreUnavailable(
                f"SQLite store {self.path}: the database file was removed"
            ) from None
        except OSError as exc:
            raise map_error(exc, self.path, "checking the database file") from None
        if not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise StoreUnavailable(f"SQLite store {self.path}: the database file is read-only")
        if (st.st_dev, st.st_ino) != self._ident:  # another file now: reopen it (if ours)
            self._reopen()
        assert self._conn is not None
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except SqliteError as exc:
            raise map_error(exc, self.path, "starting a transaction") from None
        return self._conn

    def _reopen(self, create: bool = False) -> None:
        """(Re)open the write connection on the file now at ``path``; only
        ``open`` may create a database, a replaced file must already be ours."""
        old = self._conn
        conn = open_database(self.path, self.busy_timeout_ms, self.synchronous, create=create,
                             log_first=self.journal is not None)
        # from now on statements keep the GIL unless they wait for a lock (see
        # _c): the fsync of COMMIT and commit_rows release it explicitly
        conn.release_gil = False
        self._conn = conn
        st = os.stat(self.path)
        self._ident = (st.st_dev, st.st_ino)
        self.generation += 1
        if old is not None:
            old.close()

    # ------------------------------------------------------------ solo operations

    def do_open(self, address: str) -> None:
        """Open (creating if needed) the database and register this node."""
        try:
            if not self.create and not os.path.exists(self.path):
                raise StoreError(
                    f"SQLite store {self.path} does not exist (no DNA database there)"
                )
            self._reopen(create=self.create)
            self.generation = 0
            # liveness is keyed by the file, not the path it was opened by
            self.lock_base = locks.identity(self.path)
            self._lock_fd = locks.acquire_own(self.lock_base, self.node_id)
            conn = self._begin()
            conn.execute(CATALOG_INDEX)  # a no-op once there (files from before the catalog)
            conn.execute(
                "INSERT OR REPLACE INTO nodes (node_id, address, started_at) VALUES (?, ?, ?)",
                (self.node_id, address, time.time()),
            )
            if self.journal is not None:  # records left by a crash: apply them when idle
                found: list[Any] = conn.execute("SELECT coalesce(sum(n), 0) FROM log")
                self.journal.backlog = int(found[0][0])
            conn.execute("COMMIT", release_gil=True)
            # pages the schema added now live in the database file itself: a later
            # checkpoint on a full disk (see _checkpoint) need not grow the file for them
            self._checkpoint()
        except BaseException:
            self.do_close()
            raise

    def do_close(self) -> None:
        """Unregister this node, close the connection, drop the liveness lock, stop."""
        self._stopped = True
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                try:
                    if self._lock_fd >= 0:  # the row is ours only if the node id was
                        conn.execute("DELETE FROM nodes WHERE node_id = ?", (self.node_id,))
                except SqliteError:
                    pass  # the lock below is what tells peers we are gone
                conn.close()
        finally:
            if self._lock_fd >= 0:
                locks.release_own(self.lock_base, self.node_id, self._lock_fd)
                self._lock_fd = -1

    def do_set_node(self, draining: bool | None, load: int | None, heartbeat: bool) -> None:
        conn = self._begin()
        try:
            conn.execute(
                "UPDATE nodes SET draining = coalesce(?, draining), load = coalesce(?, load), "
                "heartbeat = heartbeat + ? WHERE node_id = ?",
                (draining, load, int(heartbeat), self.node_id),
            )
            conn.execute("COMMIT", release_gil=True)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------ grouped operations

    def claim(self, conn: Connection, actor: ActorId) -> Claim:
        me = self.node_id
        found: list[Any] = conn.execute(
            _SEL_ACTOR, (actor.namespace, actor.type_name, actor.key)
        )
        if not found:
            conn.execute(_INS_ACTOR, (actor.namespace, actor.type_name, actor.key, me, time.time()))
            return Claim(actor, me, 1, conn.last_insert_rowid())
        handle, owner, epoch = found[0]
        if owner is not None and owner != me and not self._reclaimable(conn, owner):
            raise NotOwner(f"{actor} is owned by live node {owner}", owner=owner)
        # every write the last owner acknowledged, before the claim is granted
        self._replay(conn, handle)
        conn.execute(_UPD_ACTOR, (me, epoch + 1, time.time(), handle))
        return Claim(actor, me, epoch + 1, handle)

    def _replay(self, conn: Connection, handle: int) -> None:
        with savepoint(conn, "dna_replay"):
            replay_actor(conn, handle, _UPSERT, _DELETE, self._effects)

    def sync_actor(self, conn: Connection, handle: int) -> None:
        """Apply the records of actor ``handle`` (before a read of it)."""
        self._replay(conn, handle)

    def sync_named(self, conn: Connection, actor: ActorId) -> None:
        """Apply the records of ``actor`` if it exists (before a dump of it)."""
        found: list[Any] = conn.execute(_SEL_ACTOR, (actor.namespace, actor.type_name, actor.key))
        if found:
            self._replay(conn, found[0][0])

    def destroy(self, conn: Connection, claim: Claim) -> None:
        """Fenced: drop the actor's data, unapplied records and registration."""
        with savepoint(conn, "dna_destroy_log"):
            _catalog.destroy(conn, claim)
            if self.journal is not None:
                self.journal.drop_actor(conn, claim.handle, self._effects)
            else:
                conn.execute("DELETE FROM log WHERE actor = ?", (claim.handle,))

    def release(self, conn: Connection, claim: Claim) -> None:
        conn.execute(
            "UPDATE actors SET owner = NULL WHERE id = ? AND epoch = ? AND owner = ?",
            (claim.handle, claim.epoch, claim.node_id),
        )
        if not conn.changes():
            raise StaleEpoch(f"release of {claim.actor} at epoch {claim.epoch} was fenced")

    def commit(self, conn: Connection, claim: Claim, rows: list[Row]) -> None:
        handle = claim.handle
        now: list[Any] = conn.execute(_SEL_EPOCH, (handle,))
        if not now or now[0][0] != claim.epoch or now[0][1] != claim.node_id:
            epoch, owner = now[0] if now else (None, None)
            raise StaleEpoch(
                f"commit of {claim.actor} at epoch {claim.epoch} was fenced "
                f"(now epoch {epoch}, owner {owner})"
            )
        if not rows:
            return
        with savepoint(conn, "dna_commit"):
            if self.journal is not None:  # one record in the log, applied later
                self.journal.append(conn, handle, rows, _UPSERT, _DELETE, self._effects)
            else:
                # every row in order, without the GIL: the last write of a key wins
                conn.commit_rows(_UPSERT, _DELETE, handle, rows)

    # ------------------------------------------------------------ dead owners

    def _reclaimable(self, conn: Connection, owner: str) -> bool:
        """Is ``owner`` draining or dead (its lock is free)? Cached for one group."""
        verdict = self._verdicts.get(owner)
        if verdict is not None:
            return verdict
        draining: list[Any] = conn.execute(
            "SELECT draining FROM nodes WHERE node_id = ?", (owner,)
        )
        if draining and draining[0][0]:
            verdict = True
        else:
            fd = locks.probe(self.lock_base, owner)
            verdict = fd is not None
            if fd is not None:
                self._dead[owner] = fd  # hold its lock until the group is over
        self._verdicts[owner] = verdict
        return verdict

    def _forget_dead_nodes(self, conn: Connection) -> None:
        if self._dead:
            conn.executemany("DELETE FROM nodes WHERE node_id = ?", [(n,) for n in self._dead])

    def _release_dead(self) -> None:
        self._verdicts.clear()
        for owner, fd in self._dead.items():
            locks.release_dead(self.lock_base, owner, fd)
        self._dead.clear()


def _deliver(results: list[_Result]) -> None:
    """Hand results to their loops: one ``call_soon_threadsafe`` per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
    for r in results:
        by_loop.setdefault(r[0].get_loop(), []).append(r)
    for loop, batch in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, batch)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more


def _resolve(results: list[_Result]) -> None:
    for fut, value, exc in results:
        if fut.done():  # the caller was cancelled; the operation may still have applied
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)

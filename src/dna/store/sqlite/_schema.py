"""The SQLite store's file: schema, format marker, opening and error mapping.

A DNA database carries ``PRAGMA application_id = 0x444E4131`` ("DNA1") and a
``meta`` table with ``format`` and ``schema`` rows. A file that is neither
such a database nor empty is refused at open without being written to.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from ...errors import StoreError, StoreUnavailable
from ..base import TIMERS_MODULE
from . import _c as sq
from ._c import Connection, SqliteError
from ._journal import LOG_SCHEMA

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "connect", "map_error", "open_database",
           "savepoint"]

APPLICATION_ID = 0x444E4131  # "DNA1" in the SQLite header: this file is ours
FORMAT = "dna-sqlite"  # meta.format
SCHEMA_VERSION = 2  # meta.schema; a newer file is refused, never downgraded
# a file is created at schema 1; a store opened with commit="log" marks it 2, so that
# a DNA without the log-first path refuses a file that may hold unapplied records
CREATED_SCHEMA = 1
LOG_SCHEMA_VERSION = 2
_MAGIC = b"SQLite format 3\x00"

# Timers' due index: the first 8 bytes of a timer's value are its due instant, big
# endian, so blob order is time order. Part of the data table, hence exact: a timer
# and its index entry commit in the same transaction.
_TIMER_INDEX = (
    "CREATE INDEX IF NOT EXISTS data_timer_due ON data (substr(v, 1, 8), actor, k) "
    f"WHERE module = '{TIMERS_MODULE}'"
)

_SCHEMA = f"""
CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE actors (
    id INTEGER PRIMARY KEY,          -- the rowid: the handle of every Claim
    namespace TEXT NOT NULL,
    type_name TEXT NOT NULL,
    key TEXT NOT NULL,
    owner TEXT,                      -- node id, NULL when released
    epoch INTEGER NOT NULL,          -- grows on every claim; commits are fenced by it
    claimed_at REAL,
    UNIQUE (namespace, type_name, key)
);
CREATE TABLE data (
    actor INTEGER NOT NULL,
    module TEXT NOT NULL,
    k TEXT NOT NULL,
    v BLOB NOT NULL,
    PRIMARY KEY (actor, module, k)
) WITHOUT ROWID;
{_TIMER_INDEX};
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    address TEXT NOT NULL DEFAULT '',
    heartbeat INTEGER NOT NULL DEFAULT 0,
    draining INTEGER NOT NULL DEFAULT 0,
    load INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL
) WITHOUT ROWID;
INSERT INTO meta VALUES ('format', '{FORMAT}'), ('schema', '{CREATED_SCHEMA}');
PRAGMA application_id = {APPLICATION_ID};
"""

# primary result codes meaning "the store cannot be used right now" (retryable)
_UNAVAILABLE = frozenset(
    (sq.BUSY, sq.LOCKED, sq.READONLY, sq.IOERR, sq.FULL, sq.CANTOPEN, sq.PERM, sq.PROTOCOL)
)


def map_error(exc: BaseException, path: str, doing: str) -> StoreError:
    """The ``dna.errors`` exception for ``exc`` (never a binding type)."""
    if isinstance(exc, StoreError):
        return exc
    code = exc.primary if isinstance(exc, SqliteError) else None
    if code == sq.BUSY:
        err: StoreError = StoreUnavailable(
            f"SQLite store {path}: {doing}: the database stayed locked by another "
            f"connection past the busy timeout"
        )
    elif code in _UNAVAILABLE:
        err = StoreUnavailable(f"SQLite store {path}: {doing} failed: {exc}")
    elif isinstance(exc, OSError):
        err = StoreUnavailable(f"SQLite store {path}: {doing} failed: {exc.strerror or exc}")
    elif code in (sq.NOTADB, sq.CORRUPT):
        err = StoreError(f"SQLite store {path}: the file is damaged or not a database: {exc}")
    else:
        err = StoreError(f"SQLite store {path}: {doing} failed: {type(exc).__name__}: {exc}")
    err.__cause__ = exc if not isinstance(exc, SqliteError) else None
    return err


def _read_header(path: str) -> bytes:
    """The first bytes of ``path`` (b"" when missing or empty); refuses non-SQLite files."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise StoreUnavailable(
            f"cannot open SQLite store {path}: directory {directory} does not exist"
        )
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except FileNotFoundError:
        return b""
    except IsADirectoryError:
        raise StoreError(f"cannot open SQLite store {path}: it is a directory") from None
    except OSError as exc:
        raise StoreUnavailable(f"cannot open SQLite store {path}: {exc.strerror}") from None
    if head and not head.startswith(_MAGIC):
        raise StoreError(
            f"{path} is not a DNA database (not an SQLite file); refusing to open it"
        )
    return head


def connect(
    path: str, busy_timeout_ms: int, *, create: bool, release_gil: bool = True
) -> Connection:
    """A connection to ``path`` with the busy timeout set. ``release_gil``: whether
    its statements run without the GIL (see ``_c``)."""
    flags = sq.OPEN_READWRITE | (sq.OPEN_CREATE if create else 0)
    try:
        return Connection(path, flags, busy_timeout_ms, release_gil)
    except SqliteError as exc:
        raise map_error(exc, path, "opening the database") from None


def _inspect(conn: Connection, path: str) -> bool:
    """True for a DNA database, False for an empty one; refuses anything else."""
    app_id = conn.execute("PRAGMA application_id")[0][0]
    if app_id == APPLICATION_ID:
        meta: dict[Any, Any] = dict(fetch(conn, "SELECT k, v FROM meta"))
        if meta.get("format") != FORMAT:
            raise StoreError(f"{path} has DNA's application id but no DNA format marker")
        version = int(meta.get("schema", "0"))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path} uses DNA SQLite schema {version}; this version reads up to "
                f"{SCHEMA_VERSION}: upgrade DNA"
            )
        return True
    tables = [str(r[0]) for r in fetch(conn, "SELECT name FROM sqlite_master LIMIT 5")]
    if app_id == 0 and not tables:
        return False
    what = f"tables {', '.join(tables)}" if tables else f"application_id {app_id:#x}"
    raise StoreError(
        f"{path} is an SQLite database of another application ({what}); "
        f"refusing to use it as a DNA store"
    )


def open_database(
    path: str, busy_timeout_ms: int, synchronous: str, *, create: bool = True,
    log_first: bool = False,
) -> Connection:
    """The write connection to ``path``: a DNA database in WAL mode, created if
    the file is missing or empty and ``create`` is set. Never writes to a file
    that is not ours. ``log_first``: mark the file as one that may hold commit-log
    records (schema 2)."""
    _read_header(path)
    conn = connect(path, busy_timeout_ms, create=create)
    try:
        if conn.execute("PRAGMA application_id")[0][0] != APPLICATION_ID:
            _inspect_or_create(conn, path, create)
        else:  # ours, committed whole (the id and the tables come in one transaction)
            _inspect(conn, path)
            if not fetch(conn, "SELECT 1 FROM sqlite_master WHERE name = 'data_timer_due'"):
                conn.execute(_TIMER_INDEX)  # a file from before timers
        if not fetch(conn, "SELECT 1 FROM sqlite_master WHERE name = 'log_actor'"):
            conn.execute(LOG_SCHEMA)  # a file from before the log-first path
        if log_first:
            conn.execute(
                f"UPDATE meta SET v = '{LOG_SCHEMA_VERSION}' WHERE k = 'schema' "
                f"AND CAST(v AS INTEGER) < {LOG_SCHEMA_VERSION}"
            )
        _use_wal(conn, path, busy_timeout_ms)
        conn.execute(f"PRAGMA synchronous={synchronous}")
    except BaseException as exc:
        conn.close()
        raise map_error(exc, path, "opening the database") from None
    return conn


def _inspect_or_create(conn: Connection, path: str, create: bool) -> None:
    """Inspect the file and create the schema if it is empty, in ONE write
    transaction: a process creating it at the same moment is wholly before or
    wholly after us, never seen half-way (which looked like "another
    application's database"). BEGIN IMMEDIATE waits out the busy timeout."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except SqliteError as exc:
        if exc.primary != sq.READONLY:
            raise
        if not _inspect(conn, path):  # read-only and not ours yet: cannot create it
            raise StoreUnavailable(f"SQLite store {path}: the file is read-only") from None
        return
    try:
        if not _inspect(conn, path):
            if not create:
                raise StoreError(f"{path} was replaced by an empty database")
            conn.execute(_SCHEMA)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _use_wal(conn: Connection, path: str, busy_timeout_ms: int) -> None:
    """Switch to WAL mode (a no-op once it is). The switch needs the file to
    itself and SQLite fails it at once, without the busy handler, while another
    connection writes (a process creating the file at the same moment): retry
    until the busy timeout."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL")[0][0]
            break
        except SqliteError as exc:
            if exc.primary != sq.BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(0.005)
    if str(mode).lower() != "wal":
        raise StoreError(f"SQLite store {path}: cannot use WAL mode (got {mode!r})")


@contextlib.contextmanager
def savepoint(conn: Connection, name: str) -> Iterator[None]:
    """Run the block in SAVEPOINT ``name``: undone alone if it raises (unless the
    transaction itself was lost), so the rest of a group commit goes on."""
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute(f"ROLLBACK TO {name}; RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")


def fetch(conn: Connection, sql: str, params: Any = ()) -> list[Any]:
    """Every row of ``sql``; the statement is finished, so no read transaction lingers."""
    return conn.execute(sql, params)

"""Node liveness on one machine: one advisory lock file per open node.

Each open ``SQLiteStore`` holds ``flock(LOCK_EX)`` on ``<db>.nodes/<node>.lock``
for as long as it is open, where ``<db>`` is the database file's real path
(``identity``: symlinks resolved), so processes that open one file through
different paths (a symlink, a symlinked directory, ``..``) share one set of
locks and see each other. Hard links are not resolved: open a database by one
of its names. The kernel drops the lock when the process dies
(even by ``kill -9``), so "can I take that node's lock?" is an exact and
immediate liveness test for every process sharing the database file. Lock
files are only ever removed by someone holding their lock.

Local file systems only: ``flock`` is not reliable across NFS.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time

from ...errors import StoreError, StoreUnavailable

__all__ = [
    "DEAD_NO_FILE", "acquire_own", "identity", "lock_dir", "probe", "release_dead",
    "release_own", "unlock",
]

DEAD_NO_FILE = -1  # probe() result: the node has no lock file, so it is not open anywhere
_SAFE = re.compile(r"[A-Za-z0-9._-]{1,100}")
_ACQUIRE_RETRY_S = 1.0  # how long a brief liveness probe by a peer may delay our own lock


def identity(db_path: str) -> str:
    """The path every process opening ``db_path`` agrees on: its real path."""
    return os.path.realpath(db_path)


def lock_dir(db_path: str) -> str:
    """The directory holding the lock files of every node of ``db_path``."""
    return db_path + ".nodes"


def _lock_path(directory: str, node_id: str) -> str:
    if _SAFE.fullmatch(node_id) and not node_id.startswith("."):
        name = node_id
    else:  # any node id maps to a safe, stable file name
        name = "h-" + hashlib.sha256(node_id.encode()).hexdigest()[:32]
    return os.path.join(directory, name + ".lock")


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (st.st_dev, st.st_ino)


def acquire_own(db_path: str, node_id: str) -> int:
    """Take this node's lock; returns the descriptor to hold while open.

    ``StoreError`` when another open store already uses ``node_id``.
    """
    directory = lock_dir(db_path)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable(
            f"SQLite store {db_path}: cannot create lock directory {directory}: {exc.strerror}"
        ) from None
    path = _lock_path(directory, node_id)
    deadline = time.monotonic() + _ACQUIRE_RETRY_S
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreUnavailable(
                f"SQLite store {db_path}: cannot create node lock {path}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() > deadline:  # not a passing probe: the node id is in use
                raise StoreError(
                    f"SQLite store {db_path}: node id {node_id!r} is already open "
                    f"(lock {path} is held)"
                ) from None
            time.sleep(0.01)
            continue
        # a peer that found a dead holder of this id may have unlinked the file meanwhile
        if _same_file(fd, path):
            return fd
        os.close(fd)


def release_own(db_path: str, node_id: str, fd: int) -> None:
    """Drop this node's lock: from now on every peer sees it dead."""
    path = _lock_path(lock_dir(db_path), node_id)
    try:
        if _same_file(fd, path):
            os.unlink(path)
    except OSError:
        pass  # a leftover file is harmless: its lock is free
    finally:
        os.close(fd)


def probe(db_path: str, node_id: str) -> int | None:
    """Is ``node_id`` dead? None: alive (or cannot tell). Otherwise it is dead and
    the result is a descriptor holding its lock (for ``release_dead``), or
    ``DEAD_NO_FILE``."""
    path = _lock_path(lock_dir(db_path), node_id)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return DEAD_NO_FILE
    except OSError:
        return None  # when in doubt, the owner is alive
    try:  # shared: probers never mistake each other for the owner, who holds it exclusively
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:  # held (EWOULDBLOCK): alive; anything else: cannot tell, so alive
        os.close(fd)
        return None
    return fd


def release_dead(db_path: str, node_id: str, fd: int) -> None:
    """Remove a dead node's lock file (we hold a lock on it) and let go of it."""
    if fd == DEAD_NO_FILE:
        return
    release_own(db_path, node_id, fd)


def unlock(fd: int) -> None:
    """Let go of a lock taken by ``probe`` without removing the file."""
    if fd != DEAD_NO_FILE:
        os.close(fd)

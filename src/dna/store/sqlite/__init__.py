"""The SQLite store (the embedded default): ``SQLiteStore``. Its parts: ``_store`` (the
Store), ``_writer`` (the group-commit writer thread), ``_schema`` (open and create),
``_locks`` (node liveness by OS file locks), ``_c`` (the Cython binding to SQLite)."""

from __future__ import annotations

from ._store import SQLiteStore

__all__ = ["SQLiteStore"]

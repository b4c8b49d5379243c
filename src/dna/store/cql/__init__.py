"""The CQL store (ScyllaDB, Apache Cassandra): ``ScyllaStore``, the only importer of the
driver (the ``[cql]`` extra). Its parts: ``_store`` (the Store), ``_bridge`` (the one
asyncio-to-driver bridge), ``_session`` (connect, peers), ``_schema`` (statements)."""

from __future__ import annotations

from ._store import ScyllaStore

__all__ = ["ScyllaStore"]

"""The SQLite store's actor catalog: listing, dumping and destroying actors.

The catalog is the ``actors`` table itself: one row per actor ever claimed.
A destroyed actor keeps its row with ``owner`` and ``claimed_at`` NULL (its
epoch stays, so no claim from before the destroy can commit again) and is
not listed. Pages follow the index ``actors_catalog (type_name, namespace,
key)``: a page costs one index range read of ``limit`` rows, whatever the
table's size, and the cursor is the last name listed (``store._cursor``).
"""

from __future__ import annotations

from typing import Any

from ...errors import StaleEpoch
from .. import _cursor
from ..base import ActorId, CatalogRow, Claim, Row
from ._c import Connection
from ._schema import savepoint

__all__ = ["INDEX", "as_rows", "catalog_query", "destroy", "dump_query", "page"]

# created at open when missing (files made before the catalog lack it)
INDEX = "CREATE INDEX IF NOT EXISTS actors_catalog ON actors (type_name, namespace, key)"

_DUMP = (  # an actor without rows is one row of NULLs; no row: no such actor
    "SELECT d.module, d.k, d.v FROM actors a LEFT JOIN data d ON d.actor = a.id "
    "WHERE a.namespace = ? AND a.type_name = ? AND a.key = ? AND a.claimed_at IS NOT NULL "
    "ORDER BY d.module, d.k LIMIT ?"
)


def catalog_query(
    type_name: str | None, namespace: str | None, after: str | None, limit: int
) -> tuple[str, tuple[Any, ...]] | None:
    """The SQL and parameters of one catalog page (``limit`` rows, name order), or
    None when the cursor is past every actor the filters allow.

    Filtered columns are fixed by equality and only the others carry the
    cursor's range, so SQLite seeks the index (``type_name``: ``actors_catalog``;
    ``namespace`` alone: the unique index ``(namespace, type_name, key)``)."""
    fixed = {"type_name": type_name, "namespace": namespace}
    where = ["claimed_at IS NOT NULL"]
    params: list[Any] = []
    for col, value in fixed.items():
        if value is not None:
            where.append(f"{col} = ?")
            params.append(value)
    free = [c for c in ("type_name", "namespace", "key") if fixed.get(c) is None]
    if after is not None:
        last = dict(zip(("type_name", "namespace", "key"), _cursor.decode(after), strict=True))
        mine = tuple(last[c] for c in fixed if fixed[c] is not None)
        want = tuple(v for v in fixed.values() if v is not None)
        if mine > want:
            return None
        if mine == want:
            where.append(f"({', '.join(free)}) > ({', '.join('?' * len(free))})")
            params.extend(last[c] for c in free)
    sql = (
        "SELECT namespace, type_name, key, owner, epoch FROM actors "
        f"WHERE {' AND '.join(where)} ORDER BY {', '.join(free)} LIMIT ?"
    )
    params.append(limit)
    return sql, tuple(params)


def page(rows: list[Any], limit: int) -> tuple[list[CatalogRow], str | None]:
    """Catalog rows of a query's result, and the cursor of the next page."""
    out: list[CatalogRow] = [
        (ActorId(ns, t, k), owner, int(epoch)) for ns, t, k, owner, epoch in rows
    ]
    return out, (_cursor.encode(out[-1][0]) if len(out) == limit else None)


def dump_query(actor: ActorId, limit: int) -> tuple[str, tuple[Any, ...]]:
    return _DUMP, (actor.namespace, actor.type_name, actor.key, limit)


def as_rows(got: list[Any]) -> list[Row] | None:
    """The rows of a dump query's result; None when the actor does not exist."""
    if not got:
        return None
    return [(m, k, v) for m, k, v in got if m is not None]


def destroy(conn: Connection, claim: Claim) -> None:
    """Writer-thread work item: fence, then drop the actor's data and registration,
    inside the group's transaction (its own savepoint: all or nothing)."""
    handle = claim.handle
    now: list[Any] = conn.execute("SELECT epoch, owner FROM actors WHERE id = ?", (handle,))
    if not now or now[0][0] != claim.epoch or now[0][1] != claim.node_id:
        epoch, owner = now[0] if now else (None, None)
        raise StaleEpoch(
            f"destroy of {claim.actor} at epoch {claim.epoch} was fenced "
            f"(now epoch {epoch}, owner {owner})"
        )
    with savepoint(conn, "dna_destroy"):
        conn.execute("DELETE FROM data WHERE actor = ?", (handle,))
        conn.execute(
            "UPDATE actors SET owner = NULL, claimed_at = NULL WHERE id = ?", (handle,)
        )

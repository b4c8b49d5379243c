"""The CQL store's actor catalog: listing, dumping and destroying actors.

Listing walks ``actor_data`` in token order (``SELECT DISTINCT`` of the
partition key and static columns, ``WHERE token(...) > ?``) rather than
keeping a catalog table. Why:

- the claim path is untouched: a catalog table would cost every claim a
  second write, and that write, in another partition, could never be atomic
  with the claim (a crash between them leaves an actor out of the catalog,
  or a destroyed one in it);
- a destroy stays one fenced batch of the actor's own partition (the
  one-partition commit rule), and the listing can never disagree with it;
- a page is a range read of consecutive partitions starting at the cursor's
  token, one static row each, served from the partition index: its cost does
  not grow with the table. A filter (type, namespace) is applied to what the
  page read; a page reads at most ``_BUDGET`` partitions, so under a filter a
  page may come back short, or empty, with a cursor to go on from. Listing a
  rare type among millions of actors thus walks the whole ring over many
  cheap pages (never a full scan in one request); an index partitioned by
  type would serve that case and is the way to grow if it matters.

The cursor is the token of the last partition read. Two partitions sharing a
64-bit token (odds about n^2 / 2^65) could see the second skipped when a
page ends exactly between them.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

from cassandra.query import BatchStatement, BatchType

from ...errors import CommitFailed
from ..base import ActorId, CatalogRow, Claim, Row

if TYPE_CHECKING:
    from ._store import ScyllaStore

__all__ = ["CatalogRow", "catalog", "destroy", "dump"]

_MIN_TOKEN = -(2**63)  # Murmur3's minimum: no key has it, ``> min`` is the whole ring
_BUDGET = 5_000  # partitions one page reads at most, filters or not
_TAG = "t1:"  # format of a token cursor


def _decode(cursor: str | None) -> int:
    if cursor is None:
        return _MIN_TOKEN
    if isinstance(cursor, str) and cursor.startswith(_TAG):
        try:
            token = int(cursor[len(_TAG):])
        except ValueError:
            pass
        else:
            if _MIN_TOKEN <= token < 2**63:
                return token
    raise ValueError(f"not a catalog cursor of this store: {cursor!r:.80}")


async def catalog(
    store: ScyllaStore, type_name: str | None, namespace: str | None, after: str | None,
    limit: int,
) -> tuple[builtins.list[CatalogRow], str | None]:
    """See ``Store.catalog``: partitions in token order from the cursor's token."""
    token = _decode(after)
    if limit <= 0:
        return [], after
    bridge, st, _ = store._open()
    filtered = type_name is not None or namespace is not None
    out: builtins.list[CatalogRow] = []
    read = 0
    # partitions per request: under a filter it doubles each round, so what the next
    # page reads again (past this page's last match) stays under half of what was read
    step = limit
    while read < _BUDGET:
        want = min(_BUDGET - read, step if filtered else limit - len(out))
        step *= 2
        rows = await store._do(bridge.run(st.catalog, (token, want)), "listing actors")
        for ns, tn, key, owner, epoch, claimed_at, tok in rows:
            read += 1
            token = tok
            if claimed_at is None:  # destroyed: only its epoch is left
                continue
            if (type_name is None or tn == type_name) and (namespace is None or ns == namespace):
                out.append((ActorId(ns, tn, key), owner, epoch or 0))
                if len(out) == limit:
                    return out, f"{_TAG}{token}"
        if len(rows) < want:
            return out, None  # the end of the ring
    return out, f"{_TAG}{token}"


async def destroy(store: ScyllaStore, claim: Claim) -> None:
    """One fenced batch of the actor's partition: the fence empties the owner and
    ``claimed_at`` (the epoch stays), a range tombstone removes every row."""
    _, st, _ = store._open()
    from ._store import _marker, _pk, _stale

    actor = claim.actor
    slots = store._slots
    if slots is not None:  # the slot path's fence: IF epoch <= S (or = null)
        hold = slots.hold_of(claim)

        def make(new: bool, marker: int) -> Any:
            b = BatchStatement(BatchType.UNLOGGED)
            if new:
                b.add(st.slot_destroy_new, (claim.epoch, marker, *_pk(actor)))
            else:
                b.add(st.slot_destroy, (claim.epoch, marker, *_pk(actor), claim.epoch))
            b.add(st.destroy_rows, _pk(actor))
            return b, []

        await slots.fenced(claim, hold, make, f"destroy of {actor} at epoch {claim.epoch}")
        return
    marker = _marker()
    batch = BatchStatement(BatchType.UNLOGGED)
    batch.add(st.destroy_fence, (claim.epoch, marker, *_pk(actor), claim.node_id, claim.epoch))
    batch.add(st.destroy_rows, _pk(actor))
    doing = f"destroy of {actor} at epoch {claim.epoch}"
    applied, owner, epoch = await store._lwt(batch, None, actor, marker, doing, True)
    if applied:
        return
    if owner == claim.node_id and epoch == claim.epoch:  # resolved: it did not apply
        raise CommitFailed(f"{doing} did not apply (the server timed out); nothing removed")
    raise _stale("destroy", claim, owner, epoch)


async def dump(store: ScyllaStore, actor: ActorId, limit: int) -> builtins.list[Row] | None:
    bridge, st, _ = store._open()
    pk = (actor.namespace, actor.type_name, actor.key)
    rows: Any = await store._do(bridge.run(st.dump, (*pk, max(limit, 1))), f"reading {actor}")
    if not rows or rows[0][3] is None:  # never claimed, or destroyed
        return None
    return [(m, k, v) for m, k, v, _ in rows if m is not None][:max(limit, 0)]

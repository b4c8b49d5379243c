"""Carrying the first release's timer index over to ``timers_due`` (see ``_timers``).

That release kept one index partition per minute of due time for every actor
type (``timer_due``) and one scan mark (``timer_scan``). Its past partitions
may hold more tombstones than the server reads in one query (Cassandra fails
such a read with ``TombstoneOverwhelmingException``), so neither a whole-table
read nor ``SELECT DISTINCT`` over it can be relied on. The copy goes:

1. partition by partition from the old scan mark to a day past the present (all
   the old scanner ever looked at, and where the tombstones are), a minute read
   in halves of its due range whenever a read fails;
2. partitions past that (timers due later than a day ahead, few deletions),
   found by ``SELECT DISTINCT`` over token ranges; a range whose read fails is
   split until it holds only partitions step 1 copied.

Every entry is inserted into ``timers_due`` (idempotent: a store opening
meanwhile copies the same), each type's mark is set at or below its oldest
entry, and only then are the old tables dropped. Blocking: run in a worker
thread (``create_schema`` is).
"""

from __future__ import annotations

import itertools
import logging
import struct
import time
from bisect import bisect_right
from collections.abc import Iterable
from typing import Any

from ...errors import StoreError
from ._timers import BUCKET_US, WALK

__all__ = ["OLD_TABLES", "migrate_timer_index"]

log = logging.getLogger("dna.store")

OLD_TABLES = ("timer_due", "timer_scan")
_MIN_TOKEN, _MAX_TOKEN = -(2**63), 2**63 - 1
_RANGES = 64  # token ranges of the first pass over partitions past the walked span
_COLS = "due, namespace, type_name, key, name, setting"


def _token(bucket: int) -> int:
    """The Murmur3 token of a ``bigint`` partition key, as the server computes it."""
    from cassandra.metadata import Murmur3Token

    token: int = Murmur3Token.hash_fn(struct.pack(">q", bucket))
    return token


def migrate_timer_index(session: Any, ks: str, put_cql: str) -> None:
    """Copy ``ks.timer_due`` into ``timers_due`` (``put_cql``: its insert), then drop
    the old tables; a ``StoreError`` if some partition cannot be read."""
    from cassandra.concurrent import execute_concurrent_with_args

    put = session.prepare(put_cql)
    by_range = session.prepare(f"SELECT {_COLS} FROM {ks}.timer_due WHERE bucket = ? "
                               "AND due >= ? AND due < ?")
    low: dict[str, int] = {}  # per type, the oldest bucket copied

    def copy(bucket: int, lo: int, hi: int, rows: Any = None) -> None:
        """Entries of ``bucket`` with ``lo <= due < hi`` (``rows``: read already),
        halving on a failed read."""
        try:
            if rows is None:
                rows = list(session.execute(by_range, (bucket, lo, hi)))
            elif isinstance(rows, Exception):
                raise rows
        except Exception as exc:  # too many tombstones for one read, typically
            if hi - lo < 2:
                raise StoreError(f"carrying the old timer index over: bucket {bucket} cannot "
                                 f"be read at due {lo}: {exc}") from exc
            mid = (lo + hi) // 2
            copy(bucket, lo, mid)
            copy(bucket, mid, hi)
            return
        args = []
        for due, ns, tn, key, name, setting in rows:
            b = due // BUCKET_US
            low[tn] = min(b, low.get(tn, b))
            args.append((tn, b, due, ns, key, name, setting))
        if args:
            execute_concurrent_with_args(session, put, args, concurrency=64,
                                         raise_on_first_error=True)

    def copy_bucket(bucket: int, rows: Any = None) -> None:
        copy(bucket, bucket * BUCKET_US, (bucket + 1) * BUCKET_US, rows)  # its minute

    mark = list(session.execute(f"SELECT low FROM {ks}.timer_scan WHERE id = 0"))
    now = time.time_ns() // 1000 // BUCKET_US
    first = int(mark[0][0]) if mark and mark[0][0] is not None else now
    walked = range(first, now + WALK + 1)
    reads = execute_concurrent_with_args(
        session, by_range, [(b, b * BUCKET_US, (b + 1) * BUCKET_US) for b in walked],
        concurrency=64, raise_on_first_error=False, results_generator=True)
    for bucket, (ok, rows) in zip(walked, reads, strict=True):
        copy_bucket(bucket, list(rows) if ok else rows)
    walked_tokens = sorted(_token(b) for b in walked)
    distinct = session.prepare(f"SELECT DISTINCT bucket FROM {ks}.timer_due "
                               "WHERE token(bucket) > ? AND token(bucket) <= ?")

    def beyond(lo: int, hi: int) -> Iterable[int]:
        """Buckets outside ``walked`` whose token is in ``(lo, hi]``."""
        try:
            return [r[0] for r in session.execute(distinct, (lo, hi)) if r[0] not in walked]
        except Exception as exc:  # a walked partition's tombstones, typically: leave it out
            i = bisect_right(walked_tokens, lo)
            if i == len(walked_tokens) or walked_tokens[i] > hi:
                raise StoreError(f"carrying the old timer index over: partitions of tokens "
                                 f"({lo}, {hi}] cannot be listed: {exc}") from exc
            t = walked_tokens[i]  # (t - 1, t] holds only walked partitions: skipped
            return [*(beyond(lo, t - 1) if t - 1 > lo else ()),
                    *(beyond(t, hi) if hi > t else ())]

    step = (_MAX_TOKEN - _MIN_TOKEN) // _RANGES
    bounds = [_MIN_TOKEN + i * step for i in range(_RANGES)] + [_MAX_TOKEN]
    if _MIN_TOKEN in walked_tokens:  # (lo, hi] ranges miss the lowest token itself
        raise StoreError("carrying the old timer index over: a bucket has the minimum token")
    for lo, hi in itertools.pairwise(bounds):
        for bucket in beyond(lo, hi):
            copy_bucket(bucket)
    for tn, bucket in low.items():  # each type's scan mark at or below its entries
        got = list(session.execute(f"SELECT low FROM {ks}.timers_scan WHERE type_name = %s",
                                   (tn,)))
        if not got or got[0][0] is None or got[0][0] > bucket:
            session.execute(f"UPDATE {ks}.timers_scan SET low = %s WHERE type_name = %s",
                            (bucket, tn))
    for table in OLD_TABLES:
        session.execute(f"DROP TABLE IF EXISTS {ks}.{table}")
    log.info("the timer index of keyspace %s was carried over to timers_due (%d types)",
             ks, len(low))

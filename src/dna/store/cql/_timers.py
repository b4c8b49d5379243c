"""Timers' due index on CQL: the table ``timers_due``, one partition per actor type
and minute of due time.

A timer itself lives in its actor's partition of ``actor_data`` (module
``dna.timers``), so it commits in the actor's one fenced batch. The index
cannot join that batch (another partition), so:

- its entry is written *before* the commit that stores the timer: a commit
  that then fails leaves a stale entry (a spurious wake-up), never a timer
  without one;
- an entry is deleted only once the actor has answered, after a durable
  commit, that the setting of the timer it names (its token) is gone;
- an entry is indexed at its due instant, or at the writer's present when that
  is later (a timer set in the past), in the bucket of that minute and of its
  actor's type; ``timers_scan.low`` marks, per type, the oldest bucket that may
  hold entries. A bucket is passed over for good only once it is empty and
  ``GRACE`` buckets old, so a writer whose clock lags the scanner's by less than
  ``GRACE - 1`` minutes never writes where nobody looks.

A node lists only the types it serves (``due_timers(types=...)``): timers of a
type no live node has loaded wait in their own partitions, holding back only
their own type's mark, and cost the other types' scans nothing; the first node
that loads the type fires them.

Deleted entries leave tombstones that a read of their range must step over.
So each scanner remembers, per bucket, a floor below which it found nothing
pending (at most ``SKEW_US`` behind its clock, since a new entry is indexed no
earlier than its writer's present) and reads from there; every ``FULL_SCAN_S``
seconds it forgets the floors and reads every bucket whole, which catches an
entry a writer with a lagging clock put below a floor.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Iterable
from typing import Any

from cassandra.query import BatchStatement, BatchType

from ..base import ActorId, DueTimer, timer_header

__all__ = ["BUCKET_US", "GRACE", "TimerIndex"]

BUCKET_US = 60_000_000  # microseconds of due time per index partition
GRACE = 5  # buckets (minutes) an empty bucket must be old before it is passed over
SKEW_US = 10_000_000  # how far behind its clock a scanner's floor stays
FULL_SCAN_S = 60.0  # seconds between whole reads of every bucket
WALK = 1440  # buckets (a day): how far past the present a listing of due entries looks
BATCH = 32  # index rows per unlogged batch: ~2 KB, under Cassandra's 5 KB batch warning


def _now_us() -> int:
    return time.time_ns() // 1000


class TimerIndex:
    """The due index of one open ``ScyllaStore``; ``run(query, params)`` sends a
    prepared statement and returns its rows (raising DNA's errors)."""

    def __init__(self, st: Any, run: Any) -> None:
        self._st = st  # prepared statements (timer_*)
        self._run = run  # coroutine function: (query, params, doing) -> rows
        self._low: dict[str, int] = {}  # cached timers_scan.low per type
        self._loading: dict[str, asyncio.Future[int]] = {}  # type -> its mark being read
        self._floor: dict[tuple[str, int], int] = {}  # (type, bucket) -> nothing pending below
        self._full_at = 0.0  # monotonic time of the last whole read

    async def put(self, actor: ActorId, timers: builtins.list[tuple[str, bytes]]) -> None:
        """Index entries for ``timers`` ((name, stored value)) of ``actor``: call
        before the commit that stores them, and fail that commit if this fails."""
        if actor.type_name not in self._low:  # its scan mark: listings find the type
            await self._low_bucket(actor.type_name)
        now = _now_us()
        parts: dict[int, list[tuple[Any, ...]]] = {}  # bucket -> rows of that partition
        for name, value in timers:
            due, token = timer_header(value)
            due = max(due, now)  # never indexed before the writer's present
            bucket = due // BUCKET_US
            parts.setdefault(bucket, []).append(
                (actor.type_name, bucket, due, actor.namespace, actor.key, name, token))
        await self._batches(self._st.timer_put, parts, f"indexing {len(timers)} timer(s)")

    async def _batches(self, query: Any, parts: dict[Any, builtins.list[tuple[Any, ...]]],
                       doing: str) -> None:
        """Run ``query`` for every row of ``parts`` (rows grouped by index partition):
        one request per row costs a round trip and a coordinator task each (an actor
        arming 100 timers waited on 100), so a partition's rows go as unlogged
        batches of ``BATCH`` (one partition: applied as one mutation, no batch log)."""
        jobs = []
        for rows in parts.values():
            for i in range(0, len(rows), BATCH):
                chunk = rows[i:i + BATCH]
                if len(chunk) == 1:
                    jobs.append(self._run(query, chunk[0], doing))
                    continue
                batch = BatchStatement(BatchType.UNLOGGED)
                for params in chunk:
                    batch.add(query, params)
                jobs.append(self._run(batch, None, doing))
        await asyncio.gather(*jobs)

    async def _low_bucket(self, tname: str) -> int:
        low = self._low.get(tname)
        if low is not None:
            return low
        # one read (and, for a new type, one LWT) per type and process: a thousand
        # actors' first commits at once would otherwise contend on one Paxos row
        # until the server gave up (CAS WriteTimeout after 14 contention retries)
        task = self._loading.get(tname)
        if task is None:
            task = self._loading[tname] = asyncio.ensure_future(self._load_low(tname))
            task.add_done_callback(lambda t: self._loaded(tname, t))
        return await asyncio.shield(task)

    def _loaded(self, tname: str, task: asyncio.Future[int]) -> None:
        self._loading.pop(tname, None)
        if not task.cancelled():
            task.exception()  # retrieved: its waiters may all have been cancelled

    async def _load_low(self, tname: str) -> int:
        doing = f"reading the timer scan mark of {tname}"
        rows = await self._run(self._st.timer_low, (tname,), doing)
        if not rows or rows[0][0] is None:
            start = _now_us() // BUCKET_US - GRACE
            await self._run(self._st.timer_low_init, (tname, start),
                            f"creating the timer scan mark of {tname}")
            rows = await self._run(self._st.timer_low, (tname,), doing)
        # a mark is never past the present's bucket less GRACE (an older release
        # could move it a day ahead, over buckets writers had yet to reach)
        low = self._low[tname] = min(int(rows[0][0]), _now_us() // BUCKET_US - GRACE)
        return low

    async def types(self) -> builtins.list[str]:
        """Every type that has had timers indexed (one row of ``timers_scan`` each)."""
        rows = await self._run(self._st.timer_types, (), "listing timer types")
        return [r[0] for r in rows]

    async def due(
        self, now: int, limit: int, after: DueTimer | None, types: Iterable[str]
    ) -> builtins.list[DueTimer]:
        """Entries of ``types`` due by ``now`` in (type, bucket, due, namespace, key,
        name, token) order."""
        if time.monotonic() - self._full_at > FULL_SCAN_S and after is None:
            self._floor.clear()
            self._full_at = time.monotonic()
        # one read a minute of due time: a horizon is walked at most a day past the
        # present (the scanner asks for the present; entries further out are not due)
        last = min(now // BUCKET_US, _now_us() // BUCKET_US + WALK)
        out: list[DueTimer] = []
        for tname in sorted(types):
            if after is not None and tname < after.cursor[0]:
                continue  # listed before ``after``
            if len(out) >= limit:
                break
            resume = after if after is not None and after.cursor[0] == tname else None
            await self._type(tname, now, last, limit, resume, out)
        return out

    async def _type(self, tname: str, now: int, last: int, limit: int,
                    after: DueTimer | None, out: builtins.list[DueTimer]) -> None:
        """Append the due entries of type ``tname`` to ``out`` (at most ``limit`` in all)."""
        low = await self._low_bucket(tname)
        first = low if after is None else after.cursor[1]
        for bucket in range(first, last + 1):
            if len(out) >= limit:
                return
            if after is not None and after.cursor[1] == bucket:
                params: tuple[Any, ...] = (tname, bucket, now, *after.cursor[2:],
                                           limit - len(out))
                rows = await self._run(self._st.timer_due_after, params, "listing due timers")
            else:
                rows = await self._bucket(tname, bucket, now, limit - len(out))
                if rows is None:  # nothing pending there, as of the last read
                    continue
                if not rows and bucket == low and bucket < _now_us() // BUCKET_US - GRACE:
                    # whole, empty and GRACE minutes old on this clock: never written
                    # again (not ``last``: a listing far ahead must not pass the present)
                    low += 1
                    await self._run(self._st.timer_low_set, (low, tname),
                                    f"moving the timer scan mark of {tname}")
                    self._low[tname] = low
            for due, ns, key, name, token in rows:
                cursor = (tname, bucket, due, ns, key, name, token)
                out.append(DueTimer(ActorId(ns, tname, key), name, due, token, cursor))

    async def _bucket(self, tname: str, bucket: int, now: int, limit: int) -> list[Any] | None:
        """The entries of ``bucket`` due by ``now`` from its floor up, and its new
        floor; None when the floor is past the bucket (nothing to read)."""
        floor = self._floor.get((tname, bucket), bucket * BUCKET_US)
        if floor >= (bucket + 1) * BUCKET_US:
            return None
        params = (tname, bucket, floor, now, limit)
        rows: list[Any] = await self._run(self._st.timer_due, params, "listing due timers")
        # never past this clock's present less SKEW_US, whatever ``now`` was asked
        # (a listing far ahead once left floors a day ahead: nothing found till a
        # whole read)
        new = min(rows[0][0] if rows else now, _now_us() - SKEW_US)
        self._floor[(tname, bucket)] = max(floor, new)
        return rows

    async def forget(self, entries: builtins.list[DueTimer]) -> None:
        """Delete index entries whose timer setting is known gone."""
        parts: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
        for e in entries:
            if e.cursor is not None:
                parts.setdefault(e.cursor[:2], []).append(e.cursor)
        await self._batches(self._st.timer_forget, parts, "deleting stale timer entries")

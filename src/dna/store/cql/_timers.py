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

from ..base import ActorId, DueTimer, timer_header

__all__ = ["BUCKET_US", "GRACE", "TimerIndex"]

BUCKET_US = 60_000_000  # microseconds of due time per index partition
GRACE = 5  # buckets (minutes) an empty bucket must be old before it is passed over
SKEW_US = 10_000_000  # how far behind its clock a scanner's floor stays
FULL_SCAN_S = 60.0  # seconds between whole reads of every bucket
WALK = 1440  # buckets (a day): how far past the present a listing of due entries looks


def _now_us() -> int:
    return time.time_ns() // 1000


class TimerIndex:
    """The due index of one open ``ScyllaStore``; ``run(query, params)`` sends a
    prepared statement and returns its rows (raising DNA's errors)."""

    def __init__(self, st: Any, run: Any) -> None:
        self._st = st  # prepared statements (timer_*)
        self._run = run  # coroutine function: (query, params, doing) -> rows
        self._low: dict[str, int] = {}  # cached timers_scan.low per type
        self._floor: dict[tuple[str, int], int] = {}  # (type, bucket) -> nothing pending below
        self._full_at = 0.0  # monotonic time of the last whole read

    async def put(self, actor: ActorId, timers: builtins.list[tuple[str, bytes]]) -> None:
        """Index entries for ``timers`` ((name, stored value)) of ``actor``: call
        before the commit that stores them, and fail that commit if this fails."""
        if actor.type_name not in self._low:  # its scan mark: listings find the type
            await self._low_bucket(actor.type_name)
        now = _now_us()
        jobs = []
        for name, value in timers:
            due, token = timer_header(value)
            due = max(due, now)  # never indexed before the writer's present
            params = (actor.type_name, due // BUCKET_US, due, actor.namespace, actor.key, name,
                      token)
            jobs.append(self._run(self._st.timer_put, params, f"indexing timer {name!r}"))
        await asyncio.gather(*jobs)

    async def _low_bucket(self, tname: str) -> int:
        low = self._low.get(tname)
        if low is None:
            doing = f"reading the timer scan mark of {tname}"
            rows = await self._run(self._st.timer_low, (tname,), doing)
            if not rows or rows[0][0] is None:
                start = _now_us() // BUCKET_US - GRACE
                await self._run(self._st.timer_low_init, (tname, start),
                                f"creating the timer scan mark of {tname}")
                rows = await self._run(self._st.timer_low, (tname,), doing)
            low = self._low[tname] = int(rows[0][0])
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
                if not rows and bucket == low and bucket < last - GRACE:
                    low += 1  # whole, empty and old enough: never written again
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
        new = min(rows[0][0] if rows else now, now - SKEW_US)
        self._floor[(tname, bucket)] = max(floor, new)
        return rows

    async def forget(self, entries: builtins.list[DueTimer]) -> None:
        """Delete index entries whose timer setting is known gone."""
        jobs = [
            self._run(self._st.timer_forget, e.cursor, "deleting a stale timer entry")
            for e in entries
            if e.cursor is not None
        ]
        await asyncio.gather(*jobs)

"""Timers' due index on CQL: the table ``timer_due``, one partition per minute.

A timer itself lives in its actor's partition of ``actor_data`` (module
``dna.timers``), so it commits in the actor's one fenced batch. The index
cannot join that batch (another partition), so:

- its entry is written *before* the commit that stores the timer: a commit
  that then fails leaves a stale entry (a spurious wake-up), never a timer
  without one;
- an entry is deleted only once the actor has answered, after a durable
  commit, that the setting of the timer it names (its token) is gone;
- an entry is indexed at its due instant, or at the writer's present when that
  is later (a timer set in the past), in the bucket of that minute;
  ``timer_scan.low`` marks the oldest bucket that may hold entries. A bucket
  is passed over for good only once it is empty and ``GRACE`` buckets old, so a
  writer whose clock lags the scanner's by less than ``GRACE - 1`` minutes
  never writes where nobody looks.

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
        self._low: int | None = None  # cached timer_scan.low
        self._floor: dict[int, int] = {}  # bucket -> due below which nothing was pending
        self._full_at = 0.0  # monotonic time of the last whole read

    async def put(self, actor: ActorId, timers: builtins.list[tuple[str, bytes]]) -> None:
        """Index entries for ``timers`` ((name, stored value)) of ``actor``: call
        before the commit that stores them, and fail that commit if this fails."""
        now = _now_us()
        jobs = []
        for name, value in timers:
            due, token = timer_header(value)
            due = max(due, now)  # never indexed before the writer's present
            params = (due // BUCKET_US, due, actor.namespace, actor.type_name, actor.key, name,
                      token)
            jobs.append(self._run(self._st.timer_put, params, f"indexing timer {name!r}"))
        await asyncio.gather(*jobs)

    async def _low_bucket(self) -> int:
        if self._low is None:
            rows = await self._run(self._st.timer_low, (), "reading the timer scan mark")
            if not rows or rows[0][0] is None:
                start = _now_us() // BUCKET_US - GRACE
                await self._run(self._st.timer_low_init, (start,), "creating the timer scan mark")
                rows = await self._run(self._st.timer_low, (), "reading the timer scan mark")
            self._low = int(rows[0][0])
        return self._low

    async def due(
        self, now: int, limit: int, after: DueTimer | None
    ) -> builtins.list[DueTimer]:
        """Entries due by ``now`` in (bucket, due, actor, name, token) order."""
        low = await self._low_bucket()
        if time.monotonic() - self._full_at > FULL_SCAN_S and after is None:
            self._floor.clear()
            self._full_at = time.monotonic()
        last = now // BUCKET_US
        first = low if after is None else after.cursor[0]
        # one read a minute of due time: a horizon is walked at most a day past the
        # present (the scanner asks for the present; entries further out are not due)
        last = min(last, _now_us() // BUCKET_US + WALK)
        span = range(first, last + 1)
        out: list[DueTimer] = []
        for bucket in span:
            if len(out) >= limit:
                break
            if after is not None and after.cursor[0] == bucket:
                params: tuple[Any, ...] = (bucket, now, *after.cursor[1:], limit - len(out))
                rows = await self._run(self._st.timer_due_after, params, "listing due timers")
            else:
                rows = await self._bucket(bucket, now, limit - len(out))
                if rows is None:  # nothing pending there, as of the last read
                    continue
                if not rows and bucket == low and bucket < last - GRACE:
                    low += 1  # whole, empty and old enough: never written again
                    await self._run(self._st.timer_low_set, (low,), "moving the timer scan mark")
                    self._low = low
            for due, ns, tn, key, name, token in rows:
                cursor = (bucket, due, ns, tn, key, name, token)
                out.append(DueTimer(ActorId(ns, tn, key), name, due, token, cursor))
        return out

    async def _bucket(self, bucket: int, now: int, limit: int) -> list[Any] | None:
        """The entries of ``bucket`` due by ``now`` from its floor up, and its new
        floor; None when the floor is past the bucket (nothing to read)."""
        floor = self._floor.get(bucket, bucket * BUCKET_US)
        if floor >= (bucket + 1) * BUCKET_US:
            return None
        params = (bucket, floor, now, limit)
        rows: list[Any] = await self._run(self._st.timer_due, params, "listing due timers")
        new = min(rows[0][0] if rows else now, now - SKEW_US)
        self._floor[bucket] = max(floor, new)
        return rows

    async def forget(self, entries: builtins.list[DueTimer]) -> None:
        """Delete index entries whose timer setting is known gone."""
        jobs = [
            self._run(self._st.timer_forget, e.cursor, "deleting a stale timer entry")
            for e in entries
            if e.cursor is not None
        ]
        await asyncio.gather(*jobs)

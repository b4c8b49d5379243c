"""A FIFO limit on concurrent holders, O(1) per acquire and release.

Written by hand because ``asyncio.Semaphore`` (3.11, and 3.12 alike) scans its
waiters on every acquire (``locked()``) and, on every release, walks past the
waiters already woken but not yet run. A node's claims go through such a limit
(``Node(max_claims_in_flight=256)``) while thousands of activations wait: in a
profile of 100,000 activations on CQL slot leases, the semaphore took 8.8 s of
31 s, all of it in those scans.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Limiter:
    """``async with limiter:`` admits at most ``n`` holders at once, the rest in
    arrival order. A waiter cancelled before its turn gives up its place; one
    cancelled after it was granted passes its grant on."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"a limit must admit at least one holder, got {n}")
        self._free = n
        # futures of waiting holders; only queued while nothing is free, so
        # ``_free > 0`` means no one waits (release hands a grant over directly)
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Waiters queued (cancelled ones included until their turn comes)."""
        return len(self._waiters)

    async def __aenter__(self) -> None:
        if self._free > 0:
            self._free -= 1
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted, then cancelled: pass it on
                self._release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():  # cancelled waiters are skipped
                fut.set_result(None)
                return
        self._free += 1

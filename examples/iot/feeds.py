"""What the web process keeps between requests: retries and shared polling feeds.

DNA has no push from an actor to a client node, so the web process asks the
actors for changes (``Device.since``, ``Site.dashboard``) on a short period.
One ``Feed`` per watched actor polls on behalf of every browser watching it and
fans each change out to their queues; it stops when the last one leaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dna.errors import Retryable

__all__ = ["Feed", "Feeds", "retrying"]

log = logging.getLogger("examples.iot")
T = TypeVar("T")


async def retrying(fn: Callable[[], Awaitable[T]], budget: float = 5.0) -> T:
    """``await fn()``, again on a retryable error (a node died with the call in
    flight, the actor is moving) until ``budget`` seconds have passed; then the
    last error propagates."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    pause = 0.02
    while True:
        try:
            return await fn()
        except Retryable:
            if loop.time() + pause > deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.25)


class Feed:
    """Polls ``poll(cursor)`` every ``period`` seconds while anyone listens.

    ``poll`` returns ``(cursor, event)``: ``event`` (a JSON-able dict, or None
    when nothing changed) goes to every listener; ``cursor`` is passed next time.
    """

    def __init__(self, name: str, poll: Callable[[Any], Awaitable[tuple[Any, Any]]],
                 period: float, on_empty: Callable[[Feed], None]) -> None:
        self.name = name
        self.poll = poll
        self.period = period
        self.listeners: set[asyncio.Queue[Any]] = set()
        self.cursor: Any = None
        self.errors = 0
        self._on_empty = on_empty
        self._task: asyncio.Task[None] | None = None

    def subscribe(self) -> asyncio.Queue[Any]:
        q: asyncio.Queue[Any] = asyncio.Queue(maxsize=256)
        self.listeners.add(q)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return q

    def unsubscribe(self, q: asyncio.Queue[Any]) -> None:
        self.listeners.discard(q)
        if not self.listeners:
            self.close()
            self._on_empty(self)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        pause = self.period
        while True:
            try:
                self.cursor, event = await self.poll(self.cursor)
                pause = self.period
            except Retryable as exc:  # the actor is moving: poll again soon, then slower
                self.errors += 1
                log.info("feed %s: %r, polling again", self.name, exc)
                pause = min(max(pause * 2, 0.02), 0.5)
                await asyncio.sleep(pause)
                continue
            except Exception:
                self.errors += 1
                log.exception("feed %s failed, polling again", self.name)
                await asyncio.sleep(1.0)
                continue
            if event is not None:
                for q in list(self.listeners):
                    if q.full():  # a stalled browser: end its stream (None); the browser
                        self.listeners.discard(q)  # reconnects and reloads what it missed
                        while not q.empty():
                            q.get_nowait()
                        q.put_nowait(None)
                        continue
                    q.put_nowait(event)
            await asyncio.sleep(self.period)


class Feeds:
    """One ``Feed`` per name, created on first subscription."""

    def __init__(self) -> None:
        self.feeds: dict[str, Feed] = {}

    def get(self, name: str, poll: Callable[[Any], Awaitable[tuple[Any, Any]]],
            period: float) -> Feed:
        feed = self.feeds.get(name)
        if feed is None:
            feed = Feed(name, poll, period, self._forget)
            self.feeds[name] = feed
        return feed

    def _forget(self, feed: Feed) -> None:
        if self.feeds.get(feed.name) is feed:
            del self.feeds[feed.name]

    def close(self) -> None:
        for feed in self.feeds.values():
            feed.close()
        self.feeds.clear()

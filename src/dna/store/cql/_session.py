"""Connecting ``ScyllaStore`` to its server, and what it saw of its peers.

The driver's connect, schema creation and statement preparation block, so
``connect`` runs them in a worker thread (``run_in_executor``), once per
attempt; so does ``shutdown``. Nothing else leaves the event loop's thread
except through the bridge.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ...errors import StoreError, StoreUnavailable
from ..base import ALIVE, DEAD, SUSPECT, UNKNOWN
from ._bridge import UNREACHABLE, make_cluster, map_error
from ._schema import Statements, create_schema

if TYPE_CHECKING:
    from ._store import ScyllaStore

__all__ = ["Peers", "Reread", "connect", "shutdown"]

log = logging.getLogger("dna.store.cql")

_RETRY_DELAY = 0.5  # seconds between attempts to reach a server at open


class Peers:
    """Other nodes' heartbeat counters as this node saw them, on its monotonic clock.

    A peer is alive while its counter keeps moving: suspect once it has not
    moved for ``suspect_after`` seconds of our own clock, dead once it has not
    moved for ``lease`` seconds, so clock skew between machines never matters.
    A peer first seen is unknown until its counter moves (alive) or stays
    still for the lease (dead).
    """

    __slots__ = ("lease", "seen", "suspect_after")

    def __init__(self, lease: float, suspect_after: float | None = None) -> None:
        self.lease = lease  # seconds without a change that make a peer dead
        self.suspect_after = min(lease, suspect_after if suspect_after is not None else lease / 2)
        # node id -> (counter, when it last moved or was first seen, seen moving)
        self.seen: dict[str, tuple[Any, float, bool]] = {}

    def judge(
        self, node_id: str, heartbeat: Any, now: float, sent: float
    ) -> tuple[str, float | None]:
        """Record an observation, read by a request sent at ``sent`` and answered at
        ``now``; ``(state, heartbeat age)``: ALIVE, SUSPECT, DEAD or UNKNOWN, and
        seconds since the counter last moved (None while unknown).

        A counter that moved is taken to have moved at ``now`` (it may have moved as
        late as that); a still counter is known still only up to the read, so its age
        runs to ``sent``. An answer that comes late (this process paused between
        request and answer) then never makes a peer dead on its own: both ends lean
        towards alive, and refusing a live peer's slot is always safe."""
        prev = self.seen.get(node_id)
        if prev is None:
            self.seen[node_id] = (heartbeat, now, False)
            return UNKNOWN, None
        if prev[0] != heartbeat:
            self.seen[node_id] = (heartbeat, now, True)
            return ALIVE, 0.0
        age = max(0.0, sent - prev[1])
        if age >= self.lease:
            return DEAD, age if prev[2] else None
        if not prev[2]:
            return UNKNOWN, None
        return (SUSPECT if age > self.suspect_after else ALIVE), age

    def forget(self, node_id: str) -> None:
        self.seen.pop(node_id, None)


class Reread:
    """Calls of one coroutine function, shared by callers that each need an answer
    read after they asked: one call at a time, and every ask made while one runs
    shares the next. A take of a dead holder's slot reads the holder's node row
    after the slot's row; a failover takes all of its 1,024 slots at once, and one
    read per slot was half a second of the survivor's loop. Written by hand: the
    "started after the ask" rule is the whole point, and no cache offers it."""

    __slots__ = ("begun", "fn", "running", "waiting")

    def __init__(self, fn: Callable[[], Awaitable[Any]]) -> None:
        self.fn = fn
        self.running: asyncio.Future[Any] | None = None  # the call under way
        self.begun = False  # whether that call has started (sent its request)
        self.waiting: asyncio.Future[Any] | None = None  # the next call's answer

    @property
    def idle(self) -> bool:
        return self.running is None

    async def ask(self) -> Any:
        if self.running is None:
            fut = self._start()
        elif not self.begun:  # scheduled, not started: it sends after this ask
            fut = self.running
        else:  # it may have been sent before we asked: wait for the next one
            if self.waiting is None:
                self.waiting = asyncio.get_running_loop().create_future()
            fut = self.waiting
        return await asyncio.shield(fut)

    def _start(self) -> asyncio.Future[Any]:
        self.begun = False
        fut = self.running = asyncio.ensure_future(self._call())
        fut.add_done_callback(self._done)
        return fut

    async def _call(self) -> Any:
        self.begun = True  # from here on its request may have gone out
        return await self.fn()

    def _done(self, fut: asyncio.Future[Any]) -> None:
        self.running = None
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            self._start().add_done_callback(lambda f: _settle(waiting, f))


def _settle(dst: asyncio.Future[Any], src: asyncio.Future[Any]) -> None:
    if dst.done():
        return
    if src.cancelled():
        dst.cancel()
    elif src.exception() is not None:
        dst.set_exception(src.exception())  # type: ignore[arg-type]
    else:
        dst.set_result(src.result())


async def connect(store: ScyllaStore, loop: asyncio.AbstractEventLoop) -> tuple[Any, Any, Any]:
    """``(cluster, session, statements)``, retrying for ``store.connect_timeout`` seconds."""
    deadline = loop.time() + store.connect_timeout
    while True:
        job = loop.run_in_executor(None, _connect_once, store)
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            job.add_done_callback(_shutdown_late)  # it may still connect: close behind us
            raise
        except UNREACHABLE as exc:
            if loop.time() + _RETRY_DELAY >= deadline:
                raise StoreUnavailable(
                    f"no CQL server answered at {', '.join(store.hosts)} within "
                    f"{store.connect_timeout}s: {map_error(exc, 'connecting').args[0]}"
                ) from exc
            log.info("CQL server not reachable yet (%s); retrying", exc)
        except StoreError:
            raise
        except Exception as exc:
            raise map_error(exc, f"opening keyspace {store.keyspace}") from exc
        await asyncio.sleep(_RETRY_DELAY)


def _connect_once(store: ScyllaStore) -> tuple[Any, Any, Any]:
    """Blocking: connect, create the schema if missing, prepare every statement."""
    cluster = make_cluster(
        store._points,
        store._port,
        local_dc=store.local_dc,
        connect_timeout=min(store.connect_timeout, 5.0),
        request_timeout=store.request_timeout,
        options=store._options,
    )
    try:
        session = cluster.connect()
        create_schema(session, store.keyspace, store._replication, store.create)
        statements = Statements(session, store.keyspace)
        return cluster, session, statements
    except BaseException:
        cluster.shutdown()
        raise


def _shutdown_late(job: asyncio.Future[Any]) -> None:
    if not job.cancelled() and job.exception() is None:
        job.get_loop().run_in_executor(None, job.result()[0].shutdown)


async def shutdown(cluster: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Close every connection and stop the driver's threads (blocking: in a worker)."""
    await loop.run_in_executor(None, cluster.shutdown)

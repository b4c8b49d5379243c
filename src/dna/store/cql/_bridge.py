"""The one bridge from scylla-driver to asyncio, and what driver errors mean to DNA.

The driver does its network I/O on a thread of its own (libev reactor).
``Bridge.run`` starts a request with ``Session.execute_async`` on the event
loop's thread (that only encodes the request and queues its bytes), and
attaches callbacks to the driver's ``ResponseFuture``. They run on the
driver's thread and hand the outcome to the loop with
``loop.call_soon_threadsafe``, which resolves an ``asyncio.Future``. No thread
per request, no blocking call on the loop, one place where the two meet.

A result the driver pages (over 5,000 rows) is fetched page after page from
the driver's thread; the future gets every row at once.

A caller that stops waiting (cancellation) leaves the request running on the
server; its outcome is dropped when it arrives.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

from cassandra import (
    ConsistencyLevel,
    CoordinationFailure,
    InvalidRequest,
    OperationTimedOut,
    Timeout,
    Unavailable,
)
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.connection import ConnectionBusy, ConnectionException
from cassandra.policies import (
    DCAwareRoundRobinPolicy,
    ExponentialReconnectionPolicy,
    FallthroughRetryPolicy,
    RetryPolicy,
    TokenAwarePolicy,
)
from cassandra.protocol import IsBootstrappingErrorMessage, OverloadedErrorMessage
from cassandra.query import dict_factory, tuple_factory

from ...errors import CommitUnknown, StoreError, StoreUnavailable

__all__ = [
    "AMBIGUOUS",
    "LWT",
    "SERIAL",
    "UNREACHABLE",
    "Bridge",
    "make_cluster",
    "map_error",
    "parse_hosts",
    "unknown_outcome",
]

# execution profiles: the default one serves plain reads and writes
LWT = "dna-lwt"  # conditional writes: rows as dicts, never retried by the driver
SERIAL = "dna-serial"  # linearizable reads of an actor's ownership and commit marker

# A conditional write that failed with one of these may or may not have applied.
AMBIGUOUS: tuple[type[BaseException], ...] = (
    Timeout,
    Unavailable,
    CoordinationFailure,
    OperationTimedOut,
    ConnectionException,
)
# The server could not be reached or could not serve: try again later.
# (NoHostAvailable: no host took the request, so it was never sent.)
UNREACHABLE: tuple[type[BaseException], ...] = (
    *AMBIGUOUS,
    NoHostAvailable,
    ConnectionBusy,
    OverloadedErrorMessage,
    IsBootstrappingErrorMessage,
)

WINDOW = 256  # requests one store has in flight at most (see Bridge)
BUSY_FIRST = 0.002  # seconds before an unsent request (full socket buffers) goes again
BUSY_MAX = 0.05  # the longest such pause (it doubles from BUSY_FIRST)

_TOO_LARGE = ("exceeds allowed maximum", "too large", "batch too large")


def parse_hosts(hosts: Sequence[str]) -> tuple[list[tuple[str, int]], int]:
    """``["h", "h:p", "[::1]:p"]`` -> contact points ``(host, port)`` and the default port."""
    if isinstance(hosts, str):
        raise TypeError("hosts must be a list of 'host' or 'host:port' strings, not one string")
    points: list[tuple[str, int]] = []
    for entry in hosts:
        host, port = entry.strip(), 9042
        if host.startswith("["):  # [v6 address]:port
            addr, _, rest = host[1:].partition("]")
            host = addr
            if rest.startswith(":"):
                port = _port(entry, rest[1:])
        elif host.count(":") == 1:
            host, _, p = host.partition(":")
            port = _port(entry, p)
        if not host:
            raise ValueError(f"no host in {entry!r}")
        points.append((host, port))
    if not points:
        raise ValueError("hosts is empty: name at least one CQL server ('host' or 'host:port')")
    return points, points[0][1]


def _port(entry: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port in {entry!r}")
    return int(text)


def make_cluster(
    points: list[tuple[str, int]],
    port: int,
    *,
    local_dc: str | None,
    connect_timeout: float,
    request_timeout: float,
    options: dict[str, Any],
) -> Any:
    """A driver ``Cluster`` with an explicit load-balancing policy on every profile.

    Consistency: QUORUM and SERIAL, or LOCAL_QUORUM and LOCAL_SERIAL when
    ``local_dc`` is given. The driver reconnects to a server that comes back
    (every 0.5 s at first, at most every 4 s).
    """
    local = local_dc is not None
    cl = ConsistencyLevel.LOCAL_QUORUM if local else ConsistencyLevel.QUORUM
    serial = ConsistencyLevel.LOCAL_SERIAL if local else ConsistencyLevel.SERIAL

    def profile(**kw: Any) -> Any:
        lbp = TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=local_dc or ""))
        return ExecutionProfile(
            load_balancing_policy=lbp,
            request_timeout=request_timeout,
            serial_consistency_level=serial,
            **kw,
        )

    profiles = {
        # reads, heartbeats, node rows: idempotent, so the driver's retry policy may retry
        EXEC_PROFILE_DEFAULT: profile(
            consistency_level=cl, row_factory=tuple_factory, retry_policy=RetryPolicy()
        ),
        # never re-sent by the driver: an unknown outcome is resolved by the store
        LWT: profile(
            consistency_level=cl, row_factory=dict_factory, retry_policy=FallthroughRetryPolicy()
        ),
        SERIAL: profile(
            consistency_level=serial,
            row_factory=tuple_factory,
            retry_policy=FallthroughRetryPolicy(),
        ),
    }
    kwargs: dict[str, Any] = {
        "contact_points": points,
        "port": port,
        "execution_profiles": profiles,
        "connect_timeout": connect_timeout,
        "control_connection_timeout": connect_timeout,
        "reconnection_policy": ExponentialReconnectionPolicy(0.5, 4.0),
        "compression": False,
    }
    kwargs.update(options)
    return Cluster(**kwargs)


def map_error(exc: BaseException, doing: str) -> StoreError:
    """The DNA error for a driver error met while ``doing`` something."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, UNREACHABLE):
        return StoreUnavailable(f"{doing}: CQL server unavailable: {_describe(exc)}")
    if isinstance(exc, InvalidRequest) and any(s in str(exc).lower() for s in _TOO_LARGE):
        return StoreError(
            f"{doing}: the server refused it as too large ({_describe(exc)}); nothing was "
            "written. A commit is one batch and is never split: write less per batch"
        )
    return StoreError(f"{doing}: {_describe(exc)}")


def unknown_outcome(exc: BaseException, why: BaseException, doing: str) -> CommitUnknown:
    """The error for a commit that failed with ``exc`` (one of ``AMBIGUOUS``: it
    may have applied) and whose outcome could not be read back (``why``)."""
    return CommitUnknown(
        f"{doing}: outcome unknown, it may or may not have applied ({_describe(exc)}); "
        f"reading it back failed: {why}"
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, NoHostAvailable):
        errors = "; ".join(f"{h}: {e}" for h, e in (exc.errors or {}).items())
        return f"no host available ({errors or exc})"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


class Bridge:
    """Runs driver requests for one event loop (see the module docstring).

    At most ``window`` requests are in flight; later ones wait here, in order,
    for one to finish. A burst (a thousand actors' first commits, each with its
    timers) would otherwise fill the socket buffers (``ConnectionBusy``) and
    queue seconds of work on the server ahead of the heartbeat, and the node
    would fence itself for want of one. ``urgent`` requests (the heartbeat, the
    node list that judges peers) skip the wait.
    """

    __slots__ = ("inflight", "loop", "session", "timeout", "waiting", "window")

    def __init__(self, loop: asyncio.AbstractEventLoop, session: Any, timeout: float,
                 window: int = WINDOW) -> None:
        self.loop = loop  # the loop whose futures the driver's callbacks resolve
        self.session = session  # the driver Session; its methods never block here
        self.timeout = timeout  # client-side request timeout, seconds
        self.window = window  # requests in flight at most, urgent ones aside
        self.inflight = 0  # requests sent (or about to be sent again) and not answered
        self.waiting: deque[tuple[asyncio.Future[Any], Any, Any, Any]] = deque()

    def run(
        self, query: Any, params: Any = None, profile: Any = EXEC_PROFILE_DEFAULT,
        urgent: bool = False,
    ) -> asyncio.Future[Any]:
        """Send ``query`` (now, or once the window has room); the future gets the
        rows (a list) or the driver's exception."""
        fut: asyncio.Future[Any] = self.loop.create_future()
        if self.inflight >= self.window and not urgent:
            self.waiting.append((fut, query, params, profile))
            return fut
        self.inflight += 1
        self._send(fut, query, params, profile, self.loop.time() + self.timeout, BUSY_FIRST)
        return fut

    def _send(self, fut: asyncio.Future[Any], query: Any, params: Any, profile: Any,
              deadline: float, pause: float) -> None:
        """Hand one request (holding a place in the window) to the driver."""
        if fut.done():  # its caller was cancelled while it waited to be sent again
            self._finish(fut, None, None)
            return
        try:
            rf = self.session.execute_async(
                query, params, timeout=self.timeout, execution_profile=profile
            )
        except Exception as exc:  # bad parameters, session shut down
            self.inflight -= 1
            fut.set_exception(exc)
            return
        pages: list[Any] = []  # rows of the earlier pages of a paged result
        me = weakref.ref(rf)  # rf keeps these arguments: rf itself would make a cycle
        rf.add_callbacks(
            _on_rows, _on_error, callback_args=(self, fut, me, pages),
            errback_args=(self, fut, me, (query, params, profile, deadline, pause)),
        )

    def _finish(self, fut: asyncio.Future[Any], rows: Any, exc: BaseException | None) -> None:
        """A request ended (on the loop's thread): settle it, send waiting ones."""
        self.inflight -= 1
        _settle(fut, rows, exc)
        waiting = self.waiting
        while waiting and self.inflight < self.window:
            fut, query, params, profile = waiting.popleft()
            if fut.done():  # its caller stopped waiting: never sent
                continue
            self.inflight += 1
            self._send(fut, query, params, profile, self.loop.time() + self.timeout,
                       BUSY_FIRST)

    def _busy(self, fut: asyncio.Future[Any], exc: BaseException, query: Any, params: Any,
              profile: Any, deadline: float, pause: float) -> None:
        """Every connection's socket buffer was full, so the request was never sent:
        send it again shortly (backpressure on a burst, not an error) until the
        request timeout would have passed. It keeps its place in the window."""
        if self.loop.time() + pause > deadline:
            self._finish(fut, None, exc)
            return
        self.loop.call_later(pause, self._send, fut, query, params, profile, deadline,
                             min(pause * 2, BUSY_MAX))


def _unsent(exc: BaseException) -> bool:
    """True when the driver refused ``exc``'s request before sending it: each host
    tried had a full socket buffer (``ConnectionBusy``). Safe to send again, even a
    conditional write: the server never saw it."""
    if isinstance(exc, ConnectionBusy):
        return True
    if isinstance(exc, NoHostAvailable):
        errors = list((exc.errors or {}).values())
        return bool(errors) and all(isinstance(e, ConnectionBusy) for e in errors)
    return False


# driver thread -> loop thread: the only two functions the driver calls back


def _on_rows(
    rows: Any,
    bridge: Bridge,
    fut: asyncio.Future[Any],
    me: weakref.ref[Any],
    pages: list[Any],
) -> None:
    rf: Any = me()  # alive: it is calling us
    if rf.has_more_pages:  # the driver pages results (5,000 rows): the future gets them all
        pages.extend(rows)
        rf.start_fetching_next_page()  # calls back here again with the next page
        return
    if pages:
        pages.extend(rows)
        rows = pages
    _drop_timer(rf)
    try:
        bridge.loop.call_soon_threadsafe(bridge._finish, fut, [] if rows is None else rows, None)
    except RuntimeError:  # the loop is closed: nobody waits for this any more
        pass


def _on_error(
    exc: BaseException, bridge: Bridge, fut: asyncio.Future[Any], me: weakref.ref[Any],
    again: tuple[Any, ...],
) -> None:
    _drop_timer(me())
    try:
        if _unsent(exc):
            bridge.loop.call_soon_threadsafe(bridge._busy, fut, exc, *again)
        else:
            bridge.loop.call_soon_threadsafe(bridge._finish, fut, None, exc)
    except RuntimeError:
        pass


def _drop_timer(rf: Any) -> None:
    """Let a finished request go now. The driver leaves a cancelled request timer in
    its heap until the request's deadline, and the timer's callback is a method of
    the request: without this cut every commit and read (its future, message,
    statement, event and lock) stayed alive for ``request_timeout`` seconds, traced
    by each collection meanwhile (100k of them at 10k requests/s). A cancelled timer
    never calls back, so its callback is not needed; the driver's own classes are
    checked by test_store_cql.py."""
    timer = getattr(rf, "_timer", None)
    if timer is not None and getattr(timer, "canceled", False):
        timer.callback = None


def _settle(fut: asyncio.Future[Any], rows: Any, exc: BaseException | None) -> None:
    if fut.done():  # its caller was cancelled
        return
    if exc is None:
        fut.set_result(rows)
    else:
        fut.set_exception(exc)

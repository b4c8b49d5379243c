"""Cluster glue: routes to actors owned by peers, and the receiving side.

A name owned by a live peer gets a ``RemoteRoute`` in the node's routing
table in place of a local activation; senders push into it exactly as into a
local mailbox and it forwards over the transport, in send order (one
connection per peer). The receiver routes what arrives like a local send,
so it re-checks ownership: it activates the actor, or forwards once more to
the owner it finds, up to ``MAX_HOPS``. A call lost with its peer fails with
``PeerUnavailable`` (it may have run; never a false success) and drops the
route, so the next message claims or re-routes afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from ._core import RUNNING
from .actor import actor_type
from .errors import (
    InterfaceError,
    NotOwner,
    Overloaded,
    PeerUnavailable,
    ProtocolError,
    Timeout,
    UnknownHandler,
)
from .store import ActorId

if TYPE_CHECKING:
    from .actor import Actor
    from .node import Node

__all__ = ["MAX_HOPS", "RemoteRoute", "decode_remote"]

log = logging.getLogger("dna.cluster")

MAX_HOPS = 3  # forwards a message may take before the sender is told NotOwner
MAX_FRAME_CASTS = 4096  # casts buffered per route before senders wait for a flush


class _Forwarder:
    """The 'mailbox' of a remote route: pushing forwards at once, never full."""

    __slots__ = ("route",)

    capacity = 1 << 30
    full = False

    def __init__(self, route: RemoteRoute) -> None:
        self.route = route

    def push(self, msg: tuple[Any, ...]) -> bool:
        route = self.route
        if route.must_wait():
            return False  # the sender awaits push_wait: backpressure
        route.forward(msg)
        return True

    def __len__(self) -> int:
        return 0

    def clear(self) -> list[Any]:
        return []


class RemoteRoute:
    """Where messages for an actor owned by a peer go."""

    __slots__ = (
        "address", "aid", "atype", "casts", "casts_hops", "gate", "mailbox", "node", "owner",
        "room_waiters", "state", "waiting",
    )

    def __init__(
        self, node: Node, aid: ActorId, atype: type[Actor], owner: str, address: str
    ) -> None:
        self.node = node
        self.aid = aid
        self.atype = atype
        self.owner = owner  # peer node id
        self.address = address  # peer's transport address
        self.mailbox = _Forwarder(self)
        self.room_waiters: deque[Any] | None = None  # always empty: the socket buffers
        self.state = RUNNING  # never IDLE: senders do not schedule a remote route
        self.casts: list[Any] | None = None  # casts of this loop iteration, sent as one frame
        self.casts_hops = 0  # the hop count shared by the buffered casts
        self.waiting = 0  # senders inside push_wait: later ones queue behind them
        self.gate: asyncio.Lock | None = None  # FIFO order of waiting senders

    def waiters(self) -> deque[Any]:
        raise AssertionError("a remote route never has room waiters")

    def must_wait(self) -> bool:
        """Senders wait while a frame's worth of casts is buffered or the socket is full."""
        casts = self.casts
        if self.waiting or (casts is not None and len(casts) >= MAX_FRAME_CASTS):
            return True
        transport = self.node._transport
        return transport is not None and transport.congested(self.address)

    def push_nowait(self, msg: tuple[Any, ...]) -> None:
        if self.must_wait():
            raise Overloaded(f"the connection to {self.address} for {self.aid} is full")
        self.forward(msg)

    async def push_wait(self, msg: tuple[Any, ...]) -> None:
        """Forward ``msg`` once the peer's connection has room, in arrival order."""
        if self.gate is None:
            self.gate = asyncio.Lock()
        self.waiting += 1
        try:
            async with self.gate:
                self.flush()
                transport = self.node._transport
                assert transport is not None
                await transport.writable(self.address)
                self.forward(msg)
        finally:
            self.waiting -= 1

    def forward(self, msg: tuple[Any, ...]) -> None:
        hops = msg[4] if len(msg) > 4 else 0
        reply = msg[3]
        if hops >= MAX_HOPS:
            err = NotOwner(f"{self.aid}: ownership kept moving ({hops} forwards)", self.owner)
            if reply is None:
                log.warning("cast to %s dropped: %s", self.aid, err)
            elif not reply.done():
                reply.set_exception(err)
            return
        entry = [self.atype._dna_table[msg[0]].name, list(msg[1]), msg[2]]
        if reply is None:
            casts = self.casts
            if casts is not None and self.casts_hops != hops:
                self.flush()
                casts = None
            if casts is None:
                casts = self.casts = []
                self.casts_hops = hops
                self.node.loop.call_soon(self.flush)
            casts.append(entry)
            return
        if reply.done():
            return
        self.flush()  # casts sent before this call stay ahead of it
        hops += 1
        wire = [self.aid.type_name, self.aid.namespace, self.aid.key, [entry], hops]
        transport = self.node._transport
        assert transport is not None
        try:
            transport.request_to(
                self.address, wire, self.node.call_timeout, _Pending(self, msg, hops)
            )
        except Exception as exc:
            reply.set_exception(exc)

    def flush(self) -> None:
        """Send the buffered casts as one frame (one decode, one routing at the peer)."""
        casts = self.casts
        if not casts:
            return
        self.casts = None
        transport = self.node._transport
        assert transport is not None
        aid = self.aid
        try:
            transport.send(
                self.address, [aid.type_name, aid.namespace, aid.key, casts, self.casts_hops + 1]
            )
        except InterfaceError as exc:  # the node is stopping: casts are never acknowledged
            log.warning("%d casts to %s dropped: %s", len(casts), aid, exc)


class _Pending:
    """A call forwarded to a peer, settled by the transport straight from the answer."""

    __slots__ = ("finished", "hops", "msg", "route", "timer")

    def __init__(self, route: RemoteRoute, msg: tuple[Any, ...], hops: int) -> None:
        self.route = route  # where it went
        self.msg = msg  # the caller's message; msg[3] is the caller's reply
        self.hops = hops  # forwards so far, for a re-route
        self.timer: Any = None  # the transport's deadline timer
        self.finished = False

    def done(self) -> bool:
        # only the forwarded call's own state: a caller that gave up early must not
        # stop the transport's deadline from dropping a route to a paused peer
        return self.finished

    def _finish(self) -> Any:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
        return self.msg[3]

    def set_result(self, value: Any) -> None:
        reply = self._finish()
        if not reply.done():
            reply.set_result(value)

    def set_exception(self, exc: BaseException) -> None:
        reply = self._finish()
        route = self.route
        if isinstance(exc, NotOwner):
            # the peer refused before running it: safe to route again
            route.node._drop_route(route)
            route.node._deliver(route.aid, route.atype, (*self.msg[:4], self.hops))
            return
        if isinstance(exc, (PeerUnavailable, Timeout)):
            # the peer is gone or paused: route afresh next time (it may have lost the name)
            route.node._drop_route(route)
        if not reply.done():
            reply.set_exception(exc)


def decode_remote(wire: Any) -> tuple[ActorId, type[Actor], list[tuple[Any, ...]]]:
    """Validate a frame of actor messages from a peer: ``(aid, class, messages)``.

    A frame is ``[type_name, namespace, key, [[handler, args, kwargs], ...], hops]``;
    the messages come back as mailbox tuples without a reply.
    """
    if type(wire) is not list or len(wire) != 5:
        raise ProtocolError("malformed actor message")
    tname, ns, key, entries, hops = wire
    if type(tname) is not str or type(ns) is not str or type(key) is not str:
        raise ProtocolError("malformed actor message: names must be str")
    if type(entries) is not list or type(hops) is not int or hops < 0:
        raise ProtocolError("malformed actor message: bad entries or hop count")
    atype = actor_type(tname)
    handlers = atype._dna_handlers
    out = []
    for entry in entries:
        if type(entry) is not list or len(entry) != 3:
            raise ProtocolError("malformed actor message entry")
        hname, args, kwargs = entry
        spec = handlers.get(hname) if type(hname) is str else None
        if spec is None:
            raise UnknownHandler(f"{tname} has no handler {hname!r}")
        if type(args) is not list or not (kwargs is None or type(kwargs) is dict):
            raise ProtocolError("malformed actor message: bad arguments")
        out.append((spec.index, tuple(args), kwargs or None, None, hops))
    return ActorId(ns, tname, key), atype, out

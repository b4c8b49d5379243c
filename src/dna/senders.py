"""Callables behind ``ref.<handler>``: check arguments, enqueue, await the reply.

Arguments are checked and copied as msgpack would deliver them (tuples become
lists, containers are copied) at the call, so a bad argument raises
``TypeError`` in the caller and nothing is enqueued. The cast fast path is in
the compiled core (``CastSenderBase.__call__``): one call into the route's inbox.

A call carries its deadline (one timer per call, wherever the call travels)
and its chain: the actors whose handlers wait on it. A call that would wait on
an actor already in its chain fails at once with ``CallCycle``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._core import TURN, CastSenderBase, SenderBase, args_size, copy_args, copy_packable
from .errors import CallCycle, Overloaded, Timeout

if TYPE_CHECKING:
    from .ids import ActorId

__all__ = ["CallFuture", "CallSender", "CastSender"]


class CallFuture(asyncio.Future):  # type: ignore[type-arg]
    """The reply of one call: a future that also carries the call's deadline (loop
    time), chain and hop count, wherever the message goes."""

    __slots__ = ("chain", "deadline", "hops", "pending", "trace")
    trace: str | None  # W3C traceparent, set only by a traced call (dna._trace)

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float,
                 chain: tuple[ActorId, ...]) -> None:
        super().__init__(loop=loop)
        self.deadline = deadline  # the caller's deadline in ``loop.time()`` terms
        self.chain = chain  # actors whose handlers wait on this call, outermost first
        self.hops = 0  # forwards between nodes so far
        self.pending: Callable[[], None] | None = None  # a forward's expiry, run by our timer


def current_chain() -> tuple[ActorId, ...]:
    """The chain a call made right now carries: the running handler's own chain plus
    its actor; empty outside handlers."""
    inst = TURN.instance
    if inst is None:
        return ()
    msg = TURN.msg
    reply = msg[3] if msg is not None else None
    outer: tuple[ActorId, ...] = getattr(reply, "chain", ()) if reply is not None else ()
    return (*outer, inst._dna_aid)


def _expire(fut: CallFuture, timeout: float, sender: CallSender) -> None:
    if fut.pending is not None and not fut.done():
        fut.pending()  # forwarded: the transport forgets it, the route to the peer closes
    if not fut.done():
        fut.set_exception(
            Timeout(f"{sender.aid}.{sender.name}: no reply within {timeout} s")
        )


class CastSender(CastSenderBase):
    """``await ref.h(...)`` enqueues one-way; waits only while the mailbox is full."""

    __slots__ = ()

    def nowait(self, *args: Any, **kwargs: Any) -> None:
        """Enqueue or raise ``Overloaded`` at once; never waits."""
        size = args_size(args, kwargs)
        if size > self.limit:
            raise self.too_large(size)
        msg = (self.index, copy_args(args), copy_packable(kwargs) if kwargs else None, None)
        inbox = self.route()
        if not inbox.offer(msg):
            raise Overloaded(
                f"mailbox of {self.aid} is full ({inbox.capacity}) or senders wait"
            )

    def __repr__(self) -> str:
        return f"<cast {self.aid}.{self.name}>"


class CallSender(SenderBase):
    """``await ref.h(...)`` returns the handler's result or raises its error."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        size = args_size(args, kwargs)
        if size > self.limit:
            raise self.too_large(size)
        chain = current_chain()
        aid = self.aid
        if chain and aid in chain:
            path = " -> ".join(str(a) for a in (*chain, aid))
            raise CallCycle(f"call cycle: {path} (an actor handles one message at a time)")
        return self._call(copy_args(args), copy_packable(kwargs) if kwargs else None, chain)

    def __repr__(self) -> str:
        return f"<call {self.aid}.{self.name}>"

    def with_timeout(self, timeout: float) -> Callable[..., Awaitable[Any]]:
        """The same handler with another deadline: ``await ref.h.with_timeout(2)(x)``."""
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        other = CallSender(self.node, self.aid, self.atype, self.index, timeout)
        other.inbox = self.inbox
        return other

    async def _call(self, args: tuple[Any, ...], kwargs: Any, chain: tuple[Any, ...]) -> Any:
        loop = self.node.loop
        timeout = self.timeout
        deadline = loop.time() + timeout
        fut = CallFuture(loop, deadline, chain)
        inbox = self.route()
        handle = loop.call_at(deadline, _expire, fut, timeout, self)
        try:
            inbox.push((self.index, args, kwargs, fut))  # the caller waits on the reply only
            return await fut
        finally:
            handle.cancel()

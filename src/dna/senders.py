"""Callables behind ``ref.<handler>``: check arguments, enqueue, await the reply.

Arguments are checked and copied as msgpack would deliver them (tuples become
lists, containers are copied) at the call, so a bad argument raises
``TypeError`` in the caller and nothing is enqueued. The cast fast path is in
the compiled core (``CastSenderBase.__call__``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._core import CLOSING, IDLE, CastSenderBase, SenderBase, copy_args, copy_packable
from .errors import Timeout

if TYPE_CHECKING:
    from .actor import ActorRef

__all__ = ["CallSender", "CastSender"]


def _expire(fut: asyncio.Future[Any], timeout: float, ref: ActorRef, name: str) -> None:
    if not fut.done():
        fut.set_exception(Timeout(f"{ref.actor_id}.{name}: no reply within {timeout} s"))


class CastSender(CastSenderBase):
    """``await ref.h(...)`` enqueues one-way; waits only while the mailbox is full."""

    __slots__ = ()

    def nowait(self, *args: Any, **kwargs: Any) -> None:
        """Enqueue or raise ``Overloaded`` at once; never waits."""
        msg = (self.index, copy_args(args), copy_packable(kwargs) if kwargs else None, None)
        self.route().push_nowait(msg)

    def __repr__(self) -> str:
        return f"<cast {self.ref.actor_id}.{self.name}>"


class CallSender(SenderBase):
    """``await ref.h(...)`` returns the handler's result or raises its error."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return self._call(copy_args(args), copy_packable(kwargs) if kwargs else None)

    def __repr__(self) -> str:
        return f"<call {self.ref.actor_id}.{self.name}>"

    def with_timeout(self, timeout: float) -> Callable[..., Awaitable[Any]]:
        """The same handler with another deadline: ``await ref.h.with_timeout(2)(x)``."""
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        other = CallSender(self.node, self.ref, self.index, timeout)
        other.act = self.act
        return other

    async def _call(self, args: tuple[Any, ...], kwargs: Any) -> Any:
        loop = self.node.loop
        fut = loop.create_future()
        msg = (self.index, args, kwargs, fut)
        act = self.act
        if act is None or act.state >= CLOSING:
            act = self.route()
        timeout = self.timeout
        handle = loop.call_later(timeout, _expire, fut, timeout, self.ref, self.name)
        try:
            if not act.room_waiters and act.mailbox.push(msg):
                if act.state == IDLE:
                    act.schedule()
            else:
                wait = loop.create_task(act.push_wait(msg))
                await asyncio.wait((wait, fut), return_when=asyncio.FIRST_COMPLETED)
                if not wait.done():
                    wait.cancel()
            return await fut
        finally:
            handle.cancel()

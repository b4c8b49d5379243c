"""Callables behind ``ref.<handler>``: check arguments, enqueue, await the reply.

Arguments are checked and copied as msgpack would deliver them (tuples become
lists, containers are copied) at the call, so a bad argument raises
``TypeError`` in the caller and nothing is enqueued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

from ._core import copy_args, copy_packable
from .activation import CLOSING, IDLE
from .errors import Timeout

if TYPE_CHECKING:
    from .activation import Activation
    from .actor import ActorRef
    from .node import Node

__all__ = ["CallSender", "CastSender"]


class _Done:
    """An awaitable that is already complete (a cast that found room)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]


DONE = _Done()


def _expire(fut: asyncio.Future[Any], timeout: float, ref: ActorRef, name: str) -> None:
    if not fut.done():
        fut.set_exception(Timeout(f"{ref.actor_id}.{name}: no reply within {timeout} s"))


class _Sender:
    __slots__ = ("act", "index", "name", "node", "ref")

    def __init__(self, node: Node, ref: ActorRef, index: int) -> None:
        self.node = node  # routes and activates
        self.ref = ref  # whose handler this is
        self.index = index  # handler index in the class table
        self.name = ref.actor_type._dna_table[index].name
        self.act: Activation | None = None  # cached local activation

    def _route(self) -> Activation:
        act = self.act
        if act is None or act.state >= CLOSING:
            ref = self.ref
            act = self.act = self.node._activation(ref.actor_id, ref.actor_type)
        return act

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ref.actor_id}.{self.name}>"


class CastSender(_Sender):
    """``await ref.h(...)`` enqueues one-way; waits only while the mailbox is full."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[None]:
        msg = (self.index, copy_args(args), copy_packable(kwargs) if kwargs else None, None)
        act = self.act
        if act is None or act.state >= CLOSING:
            act = self._route()
        if not act.room_waiters and act.mailbox.push(msg):
            if act.state == IDLE:
                act.schedule()
            return DONE
        return act.push_wait(msg)

    def nowait(self, *args: Any, **kwargs: Any) -> None:
        """Enqueue or raise ``Overloaded`` at once; never waits."""
        msg = (self.index, copy_args(args), copy_packable(kwargs) if kwargs else None, None)
        self._route().push_nowait(msg)


class CallSender(_Sender):
    """``await ref.h(...)`` returns the handler's result or raises its error."""

    __slots__ = ("timeout",)

    def __init__(self, node: Node, ref: ActorRef, index: int, timeout: float) -> None:
        super().__init__(node, ref, index)
        self.timeout = timeout  # deadline in seconds from the call

    def __call__(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return self._call(copy_args(args), copy_packable(kwargs) if kwargs else None)

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
            act = self._route()
        handle = loop.call_later(self.timeout, _expire, fut, self.timeout, self.ref, self.name)
        try:
            if not act.room_waiters and act.mailbox.push(msg):
                if act.state == IDLE:
                    act.schedule()
            else:
                waiter = act.push_wait(msg)
                wait = loop.create_task(waiter)  # type: ignore[arg-type]
                await asyncio.wait((wait, fut), return_when=asyncio.FIRST_COMPLETED)
                if not wait.done():
                    wait.cancel()
            return await fut
        finally:
            handle.cancel()

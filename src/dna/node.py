"""``dna.Node``: the process runtime hosting activations.

A node activates an actor on its first message (claiming its name in the
store), routes messages to local activations, passivates idle ones, and on
``stop()`` flushes every pending write and releases every name it owns.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import Any, TypeVar

from ._core import Dispatcher, Mailbox
from .activation import CLOSING, IDLE, Activation, handler_error
from .actor import KIND_CALL, Actor, ActorRef, actor_type
from .errors import InterfaceError
from .senders import CallSender, CastSender
from .stats import Stats
from .store import ActorId, Store

__all__ = ["Node"]

log = logging.getLogger("dna.node")

A = TypeVar("A", bound=Actor)


def new_node_id() -> str:
    """A random 64-bit id plus the start time: unique even across fast restarts."""
    return f"{uuid.uuid4().int >> 64:016x}-{int(time.time() * 1000):x}"


class Node:
    """Hosts activations and routes messages to them.

    ``async with dna.Node(store=dna.SQLiteStore("app.db")) as node:``

    Settings: ``mailbox_size`` (bounded mailbox per activation: casts wait,
    ``nowait`` casts raise ``Overloaded`` when full), ``max_batch`` (messages
    per batch and commit), ``call_timeout`` (default deadline, seconds),
    ``passivate_after`` (idle seconds before an activation is removed).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        mailbox_size: int = 10_000,
        max_batch: int = 5_000,
        call_timeout: float = 30.0,
        passivate_after: float = 300.0,
        node_id: str | None = None,
    ) -> None:
        if store is None:
            from .store.sqlite import SQLiteStore

            store = SQLiteStore(os.path.abspath("dna.db"))
        if mailbox_size < 1 or max_batch < 1:
            raise ValueError("mailbox_size and max_batch must be at least 1")
        if call_timeout <= 0 or passivate_after <= 0:
            raise ValueError("call_timeout and passivate_after must be positive")
        self.store = store
        self.mailbox_size = mailbox_size
        self.max_batch = max_batch
        self.call_timeout = call_timeout
        self.passivate_after = passivate_after
        self.node_id = node_id or new_node_id()
        self.stats = Stats()
        self._acts: dict[ActorId, Activation] = {}
        self._dispatchers: dict[type[Actor], Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False

    # ------------------------------------------------------------ lifecycle

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise InterfaceError("the node is not started: use `async with Node(...)`")
        return self._loop

    async def start(self) -> None:
        if self._started:
            raise InterfaceError("node already started")
        self._loop = asyncio.get_running_loop()
        await self.store.open(self.node_id)
        self._started = True
        self._sweeper = self._loop.create_task(self._sweep())

    async def stop(self) -> None:
        """Finish in-flight batches, flush writes, release every owned name, close the store."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        acts = list(self._acts.values())
        if acts:
            await asyncio.gather(*(a.passivate() for a in acts), return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.close()

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ references

    def ref(self, atype: type[A] | str, key: str, namespace: str = "default") -> Any:
        """A handle on the actor ``(namespace, type, key)``; nothing is activated yet."""
        cls: type[Actor] = actor_type(atype) if isinstance(atype, str) else atype
        if not (isinstance(cls, type) and issubclass(cls, Actor)) or cls is Actor:
            raise InterfaceError(f"{atype!r} is not a dna.Actor subclass")
        if not isinstance(key, str) or not isinstance(namespace, str):
            raise TypeError("actor key and namespace must be str")
        aid = ActorId(namespace, cls.type_name, key)
        return cls._dna_ref_class(self, cls, aid)

    def _sender(self, ref: ActorRef, index: int) -> Any:
        spec = ref.actor_type._dna_table[index]
        if spec.kind == KIND_CALL:
            return CallSender(self, ref, index, self.call_timeout)
        return CastSender(self, ref, index)

    # ------------------------------------------------------------ activations

    def _activation(self, aid: ActorId, atype: type[Actor]) -> Activation:
        act = self._acts.get(aid)
        if act is None:
            if self._stopped or not self._started:
                raise InterfaceError("the node is not running")
            act = Activation(self, aid, atype, Mailbox(self.mailbox_size))
            self._acts[aid] = act
            act.start()
        return act

    def _dispatcher_for(self, atype: type[Actor]) -> Any:
        d = self._dispatchers.get(atype)
        if d is None:
            d = Dispatcher(atype._dna_table, handler_error, self._cast_failed)
            self._dispatchers[atype] = d
        return d

    def _cast_failed(self, msg: Any, exc: BaseException) -> None:
        log.error("cast handler failed (its writes were discarded)", exc_info=exc)

    def _forget(self, act: Activation) -> None:
        if self._acts.get(act.aid) is act:
            del self._acts[act.aid]

    def _takeover(self, old: Activation) -> None:
        """A fresh activation takes ``old``'s queued messages and waiters, in order."""
        if self._stopped:
            old.fail_queued(InterfaceError("the node stopped"))
            return
        act = self._acts.get(old.aid)
        if act is None:
            act = Activation(self, old.aid, old.atype, old.mailbox)
            act.room_waiters = old.room_waiters
            self._acts[old.aid] = act
            act.start()
            return
        for msg in old.mailbox.clear():  # someone re-created it meanwhile: queue behind
            if not act.mailbox.push(msg):
                act.room_waiters.append((self.loop.create_future(), msg))
        act.room_waiters.extend(old.room_waiters)
        if act.state == IDLE and len(act.mailbox):
            act.schedule()

    @property
    def activations(self) -> int:
        """Number of live activations on this node."""
        return len(self._acts)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _sweep(self) -> None:
        """Passivate activations idle for ``passivate_after`` seconds."""
        period = max(0.01, min(self.passivate_after / 4, 5.0))
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            after = self.passivate_after
            for act in [a for a in self._acts.values() if a.idle(now, after)]:
                if act.state < CLOSING:
                    self._spawn(act.passivate())

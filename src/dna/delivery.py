"""Delivery of an activation's committed sends (``self.send``; see ``storage.outbox``).

One task per receiver with something to deliver, at most one delivery call in
flight per sender and receiver (so order holds): it calls the receiver's
internal ``_dna_deliver`` handler through an ordinary ref, wherever the
receiver lives, with every queued send up to a size limit. The reply comes
after the receiver's commit (the output gate): then the sends are
acknowledged and their rows deleted with the sender's next commit (see
``Delivery._acked``). Any error is retried with backoff for as long as
the activation lives; the receiver drops what it already committed. A sender
activated again loads its un-acknowledged rows and goes on delivering them
ahead of new sends.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Any, Protocol

from ._core import BLOCKED, CLOSED, CLOSING, IDLE, RUNNING, SCHEDULED
from .actor import actor_type
from .storage.outbox import BoundOutbox, Entry, Outbox

if TYPE_CHECKING:
    from .actor import Actor
    from .ids import ActorId


class Activation(Protocol):
    """What delivery needs of the sender's activation (``dna.activation.Activation``)."""

    aid: ActorId
    atype: type[Actor]
    state: int
    inbox: Any  # the activation's own inbox: acknowledgements go in as a cast
    instance: Any  # the user object (its node makes refs)
    host: Any  # the node: spawn(), loop

__all__ = ["Delivery", "attach"]

log = logging.getLogger("dna.delivery")

MAX_ENTRIES = 10_000  # sends one delivery call carries at most
MAX_BYTES = 1 << 20  # ... and packed bytes at most (well under any frame limit)
FIRST_BACKOFF = 0.01  # seconds before the first retry; doubles up to MAX_BACKOFF
MAX_BACKOFF = 2.0
FINISH_WAIT = 5.0  # seconds a passivating sender waits for its sends to be acknowledged


def attach(act: Activation, inst: Any) -> Delivery | None:
    """The delivery of ``act``'s sends, when its class declares an ``Outbox``."""
    for name, module in act.atype._dna_modules.items():
        if isinstance(module, Outbox):
            return Delivery(act, getattr(inst, name))
    return None


class Delivery:
    """Delivers one activation's committed sends (see the module docstring)."""

    __slots__ = ("act", "busy", "closing_acks", "drained", "outbox", "pending_acks")

    def __init__(self, act: Activation, outbox: BoundOutbox) -> None:
        self.act = act  # the sender's activation: its node, name, state
        self.outbox = outbox  # queues of committed, unacknowledged sends
        self.busy: set[ActorId] = set()  # receivers a task delivers to
        self.pending_acks: list[str] = []  # acknowledged, the ack cast not pushed yet
        self.closing_acks: list[str] = []  # acknowledged while passivating
        self.drained: asyncio.Event | None = None  # set when nothing is left (passivation)
        outbox.wake = self.wake
        outbox.start()

    @property
    def idle(self) -> bool:
        return not self.busy and not self.pending_acks

    def wake(self, rid: ActorId) -> None:
        if rid in self.busy or self.act.state == CLOSED:
            return
        self.busy.add(rid)
        self.act.host.spawn(self._run(rid))

    async def _run(self, rid: ActorId) -> None:
        try:
            await self._deliver_all(rid)
        finally:
            self.busy.discard(rid)
            if not self.busy and self.drained is not None:
                self.drained.set()

    async def _deliver_all(self, rid: ActorId) -> None:
        act = self.act
        q = self.outbox.queues.get(rid)
        sender = [act.aid.namespace, act.aid.type_name, act.aid.key]
        call: Any = None
        backoff = FIRST_BACKOFF
        while q and act.state != CLOSED:
            batch = _head(q)
            try:
                if call is None:
                    call = _deliver_call(act, rid)
                # entries are fresh lists of str and bytes: no copy needed (CallSender._call)
                await call._call((sender, [[e.seq, e.packed] for e in batch]), None, ())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                level = logging.WARNING if backoff >= MAX_BACKOFF / 2 else logging.DEBUG
                log.log(level, "%s: delivery of %d sends to %s failed, retrying in %.2f s: %r",
                        act.aid, len(batch), rid, backoff, exc)
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = FIRST_BACKOFF
            self._acked(self.outbox.delivered(rid, len(batch)))
            q = self.outbox.queues.get(rid)

    def _acked(self, keys: list[str]) -> None:
        """Delete acknowledged rows with the sender's next commit: written into its
        write set between batches, by a cast to itself while a handler is suspended
        (its writes must stay its own), at the final commit while passivating."""
        act = self.act
        state = act.state
        if state in (IDLE, SCHEDULED, BLOCKED):
            self.outbox.acked(keys)
        elif state == RUNNING:
            if not self.pending_acks:
                act.host.loop.call_soon(self._push_acks)
            self.pending_acks += keys
        elif state == CLOSING:
            self.closing_acks += keys

    def _push_acks(self) -> None:
        keys, self.pending_acks = self.pending_acks, []
        act = self.act
        if act.state >= CLOSING:
            self.closing_acks += keys
            return
        index = act.atype._dna_handlers["_dna_acked"].index
        act.inbox.push((index, (keys,), None, None))

    async def finish(self) -> list[str]:
        """Passivating: wait (a bounded time) for the sends in flight, then return the
        keys of every acknowledged row, for the final commit to delete."""
        if self.busy:
            self.drained = asyncio.Event()
            try:
                await asyncio.wait_for(self.drained.wait(), FINISH_WAIT)
            except asyncio.TimeoutError:
                log.warning("%s passivates with %d sends unacknowledged: they are delivered "
                            "when it is activated again", self.act.aid, self.outbox.backlog)
        keys = self.pending_acks + self.closing_acks
        self.pending_acks, self.closing_acks = [], []
        return keys


def _head(q: Any) -> list[Entry]:
    """The oldest sends of ``q`` that fit one delivery call."""
    batch: list[Entry] = []
    size = 0
    for e in q:
        if batch and (len(batch) >= MAX_ENTRIES or size + len(e.packed) > MAX_BYTES):
            break
        batch.append(e)
        size += len(e.packed)
    return batch


def _deliver_call(act: Activation, rid: ActorId) -> Any:
    ref = act.instance.node.ref(actor_type(rid.type_name), rid.key, rid.namespace)
    return ref._dna_deliver

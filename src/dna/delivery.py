"""Delivery of an activation's committed sends (``self.send``; see ``storage.outbox``).

One task per receiver with something to deliver: it calls the receiver's
internal ``_dna_deliver`` handler through an ordinary ref, wherever the
receiver lives, with the queued sends in order, up to ``WINDOW`` calls in
flight; each call names the send before it, and the receiver refuses a call
whose predecessor it has not committed, so order holds when a call is lost. The reply comes
after the receiver's commit (the output gate): then the sends are
acknowledged and their rows deleted with the sender's next commit (see
``Delivery._acked``). Any error is retried with backoff for as long as
the activation lives; the receiver drops what it already committed. A sender
activated again (by anything, or by the wake-up timer its outbox keeps while sends
are unacknowledged) loads its un-acknowledged rows and goes on delivering them
ahead of new sends.
"""

from __future__ import annotations

import asyncio
import itertools
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

WINDOW = 4  # delivery calls in flight per sender and receiver
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
        backoff = FIRST_BACKOFF
        prev = ""  # sequence number of the last send the receiver acknowledged, if known
        while q and act.state != CLOSED:
            try:
                n, last, error = await self._window(rid, q, prev)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the receiver's class is unknown here, say
                n, last, error = 0, prev, exc
            if n:
                prev = last
                self._acked(self.outbox.delivered(rid, n))
                q = self.outbox.queues.get(rid)
            if error is None:
                backoff = FIRST_BACKOFF
                continue
            level = logging.WARNING if backoff >= MAX_BACKOFF / 2 else logging.DEBUG
            log.log(level, "%s: delivery to %s failed, retrying in %.2f s: %r",
                    act.aid, rid, backoff, error)
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _window(self, rid: ActorId, q: Any,
                      prev: str) -> tuple[int, str, BaseException | None]:
        """Up to ``WINDOW`` delivery calls in flight, in order, each naming the send
        before it (the receiver refuses one whose predecessor it has not committed:
        order holds even when an earlier call is lost). ``(how many sends from the
        head are acknowledged, the last one's sequence number, the first error)``."""
        act = self.act
        call = _deliver_call(act, rid)
        sender = [act.aid.namespace, act.aid.type_name, act.aid.key]
        calls: list[tuple[int, str, Any]] = []
        start = 0
        while len(calls) < WINDOW and start < len(q):
            batch = _head(q, start)
            wire = [[e.seq, e.packed] for e in batch]  # fresh str and bytes: sent uncopied
            calls.append((start + len(batch), batch[-1].seq,
                          asyncio.ensure_future(call._call((sender, prev, wire), None, ()))))
            prev = batch[-1].seq
            start += len(batch)
        done, last, error = 0, "", None
        for end, seq, fut in calls:
            try:
                await fut
            except asyncio.CancelledError:
                for _, _, other in calls:
                    other.cancel()
                raise
            except Exception as exc:
                error = error or exc
                continue
            done, last = end, seq  # a later call's success covers the earlier sends too
        return done, last, error

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
                log.warning("%s passivates with %d sends unacknowledged: its wake-up timer "
                            "activates it again to deliver them", self.act.aid,
                            self.outbox.backlog)
        keys = self.pending_acks + self.closing_acks
        self.pending_acks, self.closing_acks = [], []
        return keys


def _head(q: Any, start: int) -> list[Entry]:
    """The sends of ``q`` from ``start`` on that fit one delivery call."""
    batch: list[Entry] = []
    size = 0
    for e in itertools.islice(q, start, None):
        if batch and (len(batch) >= MAX_ENTRIES or size + len(e.packed) > MAX_BYTES):
            break
        batch.append(e)
        size += len(e.packed)
    return batch


def _deliver_call(act: Activation, rid: ActorId) -> Any:
    ref = act.instance.node.ref(actor_type(rid.type_name), rid.key, rid.namespace)
    return ref._dna_deliver

"""``Outbox``: exactly-once sends between actors, recorded in the sender's storage.

Declared on the sending class (``outbox = Outbox()``); inside a handler,
``self.send(ref.handler, *args)`` writes the message as a row of this module,
part of the handler's batch: it exists exactly when the handler's other writes
do. Once that commit is durable the runtime (``dna.delivery``) delivers it and
retries until the receiver answers that it committed it; then the row is
deleted. Rows are keyed ``epoch (16 hex) + counter (16 hex)`` of the sender's
claim, so they sort in send order across re-activations (every claim has a
greater epoch), and that key is the message's sequence number.

The receiving side (``receive``, any actor) keeps, per sender, the highest
sequence number it committed (one row of module ``_dna.seen`` per sender,
written in the same batch as the handler's writes) and drops anything at or
below it: a redelivery after a lost acknowledgement changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, overload

from .._core import MISSING, TURN, SenderBase, copy_args, copy_packable, pack, unpack
from ..errors import InterfaceError, TooLarge
from ..ids import ActorId
from .base import StorageContext, StorageModule

__all__ = ["SEEN", "BoundOutbox", "Entry", "Outbox", "receive", "sender_key"]

log = logging.getLogger("dna.delivery")

SEEN = "_dna.seen"  # receiver's module: one high-water mark per sender
_PAGE = 1000  # rows read per page when an activation loads its outbox


class Entry:
    """One recorded send: its row key (the sequence number), receiver and packed row."""

    __slots__ = ("key", "packed", "receiver")

    def __init__(self, key: str, receiver: ActorId, packed: bytes) -> None:
        self.key = key  # "epoch counter" in fixed-width hex: orders as the numbers do
        self.receiver = receiver  # whose handler runs it
        self.packed = packed  # msgpack [namespace, type, key, handler, args, kwargs]


def _decode_row(key: str, packed: bytes) -> Entry:
    ns, tname, rkey = unpack(packed)[:3]
    return Entry(key, ActorId(ns, tname, rkey), packed)


def sender_key(aid: ActorId) -> str:
    """The receiver's key for a sender's high-water mark."""
    return json.dumps([aid.namespace, aid.type_name, aid.key], ensure_ascii=False)


class Outbox(StorageModule):
    """Declare on an actor class that sends: ``outbox = Outbox()``."""

    def __init__(self, name: str = "") -> None:
        if name and (not isinstance(name, str) or "\x00" in name):
            raise ValueError("Outbox name must be a str without NUL")
        self.name = name

    def bind(self, ctx: StorageContext) -> BoundOutbox:
        bound = BoundOutbox(ctx, self.name)
        ctx.attach(bound)
        return bound

    @overload
    def __get__(self, obj: None, owner: type) -> Outbox: ...
    @overload
    def __get__(self, obj: object, owner: type) -> BoundOutbox: ...
    def __get__(self, obj: object, owner: type) -> Outbox | BoundOutbox:
        if obj is None:
            return self
        raise InterfaceError(f"{owner.__name__}.{self.name} is usable only inside an activation")


class BoundOutbox:
    """The outbox of one activation: what handlers recorded, and what is committed but
    not yet acknowledged, per receiver in send order."""

    __slots__ = ("_ctx", "_flushed", "_limit", "_n", "_name", "_prefix", "_recorded", "queues",
                 "wake")

    def __init__(self, ctx: StorageContext, module: str) -> None:
        self._ctx = ctx
        self._name = module
        self._prefix = f"{ctx.claim.epoch:016x}"  # first half of every key written here
        self._limit = ctx.max_value_bytes  # largest row; the frame limit is checked at send
        self._n = 0  # second half: counts this activation's sends
        self._recorded: list[Entry] = []  # written by handlers since the last commit began
        self.queues: dict[ActorId, deque[Entry]] = {}  # durable, not acknowledged yet
        self.wake: Callable[[ActorId], None] = _nothing  # the runtime's delivery, per receiver
        ctx.outbox = self  # self.send finds it here
        self._flushed: list[asyncio.Future[None]] = []  # flushed() callers waiting

    async def flushed(self) -> None:
        """Wait until every committed send is acknowledged (``backlog`` is 0). It blocks
        this actor meanwhile: never wait so on a send to the actor itself."""
        if self.backlog:
            fut = asyncio.get_running_loop().create_future()
            self._flushed.append(fut)
            await fut

    def delivered(self, rid: ActorId, n: int) -> list[str]:
        """The receiver committed the oldest ``n`` sends to it: their keys."""
        q = self.queues[rid]
        keys = [q.popleft().key for _ in range(n)]
        if not q:
            del self.queues[rid]
            if not self.queues:
                waiting, self._flushed = self._flushed, []
                for fut in waiting:
                    if not fut.done():
                        fut.set_result(None)
        return keys

    @property
    def backlog(self) -> int:
        """Sends committed and not acknowledged by their receiver yet."""
        return sum(len(q) for q in self.queues.values())

    async def load(self) -> None:
        """Un-acknowledged rows of earlier activations, queued ahead of new sends."""
        after: str | None = None
        store, claim = self._ctx.store, self._ctx.claim
        while True:
            rows = await store.list(claim, self._name, "", _PAGE, after)
            for key, packed in rows:
                self._queue(_decode_row(key, packed))
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    def _queue(self, e: Entry) -> None:
        q = self.queues.get(e.receiver)
        if q is None:
            q = self.queues[e.receiver] = deque()
        q.append(e)

    def start(self) -> None:
        """Deliver what ``load`` found (the runtime calls it once it listens)."""
        for rid in self.queues:
            self.wake(rid)

    def send(self, inst: Any, handler: Any, args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> None:
        """Record ``handler(*args, **kwargs)`` for delivery after this batch commits."""
        if TURN.instance is not inst:
            raise InterfaceError("self.send is usable only inside a handler of this actor "
                                 "(it is part of the handler's atomic commit)")
        if not isinstance(handler, SenderBase):
            raise TypeError(f"self.send takes a handler of a ref (ref.handler), not "
                            f"{type(handler).__name__}")
        aid = handler.ref.actor_id
        try:
            packed = pack([aid.namespace, aid.type_name, aid.key, handler.name, args,
                           kwargs or None])
        except TypeError:  # say which argument, as a call would
            copy_args(args)
            copy_packable(kwargs)
            raise
        n = len(packed)
        if n > handler.limit or (self._limit is not None and n > self._limit):
            limit = min(handler.limit, self._limit or handler.limit)
            raise TooLarge(f"{aid}.{handler.name}: a send of {n} bytes is over the limit of "
                           f"{limit} bytes: nothing was recorded")
        key = f"{self._prefix}{self._n:016x}"
        self._n += 1
        self._ctx.ws.write(self._name, key, packed)
        self._recorded.append(Entry(key, aid, packed))

    def seal(self) -> Callable[[], None] | None:
        if not self._recorded:
            return None
        ws, name = self._ctx.ws, self._name
        # right after take(): a send whose handler raised is not in the committing layer
        sealed = [e for e in self._recorded if ws.get(name, e.key) is not MISSING]
        self._recorded = []
        if not sealed:
            return None

        def durable() -> None:
            queues = self.queues
            woken = []
            last: Any = None
            q: Any = None
            for e in sealed:
                if e.receiver is not last:  # runs of sends to one ref skip the lookup
                    last = e.receiver
                    q = queues.get(last)
                    if q is None:
                        q = queues[last] = deque()
                        woken.append(last)
                q.append(e)
            for rid in woken:
                self.wake(rid)

        return durable

    def acked(self, keys: list[str]) -> None:
        """Delete the rows of acknowledged sends (a write of the running batch)."""
        ws, name = self._ctx.ws, self._name
        for key in keys:
            ws.delete(name, key)


def _nothing(_rid: ActorId) -> None:
    return None


async def receive(inst: Any, ctx: StorageContext, sender: list[str],
                  entries: list[list[Any]]) -> int:
    """Run the sends in ``entries`` (``[key, packed row]`` from ``sender``, in order) on
    ``inst``, each at most once: those at or below the sender's high-water mark are
    dropped. A handler that raises has its writes discarded and counts as done
    (logged). Returns how many ran."""
    aid = ActorId(*sender)
    skey = sender_key(aid)
    seen: dict[str, str] = inst.__dict__.setdefault("_dna_seen", {})
    hwm = seen.get(skey)
    if hwm is None:
        v = await ctx.read(SEEN, skey)
        hwm = "" if v is None else unpack(v)
    handlers = type(inst)._dna_handlers
    ws = ctx.ws
    ran = 0
    top: str = hwm
    for key, packed in entries:
        if key <= top:
            continue  # a redelivery: already committed (fixed-width keys order as numbers)
        top = key
        hname, args, kwargs = unpack(packed)[3:]
        spec = handlers.get(hname)
        if spec is None:
            log.error("%s: send %s from %s dropped: no handler %r", inst._dna_aid, key, aid,
                      hname)
            continue
        ws.begin()  # a failing handler rolls back its own writes only
        try:
            r = spec.fn(inst, *args, **kwargs) if kwargs else spec.fn(inst, *args)
            if spec.is_async:
                await r
        except Exception:
            ws.rollback()
            log.error("%s.%s failed on send %s from %s (its writes were discarded)",
                      inst._dna_aid, hname, key, aid, exc_info=True)
            continue
        ran += 1
    if top != hwm:
        ws.write(SEEN, skey, pack(top))
        seen[skey] = top
    return ran

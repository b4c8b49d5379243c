"""``Outbox``: exactly-once sends between actors, recorded in the sender's storage.

Declared on the sending class (``outbox = Outbox()``); inside a handler,
``self.send(ref.handler, *args)`` records the message in this module, part of
the handler's batch: it exists exactly when the handler's other writes do.
Once that commit is durable the runtime (``dna.delivery``) delivers it and
retries until the receiver answers that it committed it; once every send of a
row is acknowledged the row is deleted.

Rows: the sends of one handler invocation share one row (a marker is written
at its first send, so a handler that raises takes it along; the row's value is
filled in as the commit starts). Keys are ``epoch (16 hex) + counter (16 hex)``
of the sender's claim, so rows sort in send order across re-activations (every
claim has a greater epoch); a send's sequence number is its row key plus its
index in the row (8 hex): fixed width, so strings order as the numbers do.

While any of its sends is unacknowledged, the sender keeps a wake-up timer
(``OUTBOX_WAKE`` in the timers' module, written with the first commit that
has sends, due ``WAKE_AFTER`` seconds later): if its node dies, or it is
passivated before its receivers answered, a live node's timer scanner
activates it again and delivery goes on without anyone calling it. On a live
sender the firing only moves the wake-up on; with nothing left to deliver it
removes it.

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
from typing import Any

from .._core import TURN, SenderBase, copy_args, copy_packable, pack, unpack
from ..errors import InterfaceError, TooLarge
from ..ids import ActorId
from ..store.base import TIMERS_MODULE
from .base import StorageContext, StorageModule
from .timers import FIRE_HANDLER, OUTBOX_WAKE, encode_timer, fire_handler, now_us

__all__ = ["SEEN", "BoundOutbox", "Entry", "OutOfOrder", "Outbox", "receive", "sender_key"]

log = logging.getLogger("dna.delivery")

SEEN = "_dna.seen"  # receiver's module: one high-water mark per sender
_PAGE = 100  # rows read per page when an activation loads its outbox
ROW_BYTES = 1 << 20  # a handler's sends beyond this many bytes go on in a further row
WAKE_AFTER = 5.0  # seconds: a sender with unacknowledged sends is woken this often
_WAKE_BODY = pack([None, None])  # the wake-up timer's payload and period


class Entry:
    """One recorded send: sequence number, row, receiver, packed message."""

    __slots__ = ("packed", "receiver", "row", "seq")

    def __init__(self, seq: str, row: str, receiver: ActorId, packed: bytes) -> None:
        self.seq = seq  # row key + index (hex, fixed width): orders as the numbers do
        self.row = row  # key of the row holding it
        self.receiver = receiver  # whose handler runs it
        self.packed = packed  # msgpack [namespace, type, key, handler, args, kwargs]


class _Group:
    """The sends of one handler invocation: one row."""

    __slots__ = ("entries", "key", "msg", "size")

    def __init__(self, key: str, msg: Any) -> None:
        self.key = key  # the row key
        self.msg = msg  # the message whose handler made them
        self.entries: list[Entry] = []
        self.size = 0  # packed bytes of the entries: a row stays under ROW_BYTES


def _decode_row(key: str, value: bytes) -> list[Entry]:
    out: list[Entry] = []
    for i, packed in enumerate(unpack(value) if value else ()):
        ns, tname, rkey = unpack(packed)[:3]
        out.append(Entry(f"{key}{i:08x}", key, ActorId(ns, tname, rkey), packed))
    return out


def sender_key(aid: ActorId) -> str:
    """The receiver's key for a sender's high-water mark."""
    return json.dumps([aid.namespace, aid.type_name, aid.key], ensure_ascii=False)


class Outbox(StorageModule["BoundOutbox"]):
    """Declare on an actor class that sends: ``outbox = Outbox()``."""

    def bind(self, ctx: StorageContext) -> BoundOutbox:
        bound = BoundOutbox(ctx, self.name)
        ctx.attach(bound)
        return bound

    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {FIRE_HANDLER: fire_handler}  # the wake-up timer's firing


class BoundOutbox:
    """The outbox of one activation: what handlers recorded, and what is committed but
    not yet acknowledged, per receiver in send order."""

    __slots__ = ("_armed", "_ctx", "_flushed", "_groups", "_limit", "_n", "_name", "_prefix",
                 "_rows", "_sealing", "queues", "wake")

    def __init__(self, ctx: StorageContext, module: str) -> None:
        self._ctx = ctx
        self._name = module
        self._prefix = f"{ctx.claim.epoch:016x}"  # first half of every key written here
        self._n = 0  # second half: counts this activation's rows
        self._limit = ctx.max_value_bytes  # largest row; the frame limit is checked at send
        self._groups: list[_Group] = []  # rows of handlers since the last commit began
        self._rows: dict[str, int] = {}  # durable row -> its sends not acknowledged yet
        self.queues: dict[ActorId, deque[Entry]] = {}  # durable, not acknowledged yet
        self.wake: Callable[[ActorId], None] = _nothing  # the runtime's delivery, per receiver
        self._flushed: list[asyncio.Future[None]] = []  # flushed() callers waiting
        self._armed = False  # the wake-up timer is set (committed or in the write set)
        self._sealing = 0  # commits with sends in flight (not durable yet)
        ctx.outbox = self  # self.send finds it here

    @property
    def backlog(self) -> int:
        """Sends committed and not acknowledged by their receiver yet."""
        return sum(len(q) for q in self.queues.values())

    async def flushed(self) -> None:
        """Wait until every committed send is acknowledged (``backlog`` is 0). It blocks
        this actor meanwhile: never wait so on a send to the actor itself."""
        if self.backlog:
            fut = asyncio.get_running_loop().create_future()
            self._flushed.append(fut)
            await fut

    async def load(self) -> None:
        """Un-acknowledged rows of earlier activations, queued ahead of new sends."""
        after: str | None = None
        store, claim = self._ctx.store, self._ctx.claim
        self._armed = await store.read(claim, TIMERS_MODULE, OUTBOX_WAKE) is not None
        while True:
            rows = await store.list(claim, self._name, "", _PAGE, after)
            for key, value in rows:
                self._queue(_decode_row(key, value))
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    def start(self) -> None:
        """Deliver what ``load`` found (the runtime calls it once it listens)."""
        for rid in self.queues:
            self.wake(rid)

    def _queue(self, entries: list[Entry]) -> None:
        if not entries:
            return
        self._rows[entries[0].row] = len(entries)
        queues = self.queues
        woken = []
        last: Any = None
        q: Any = None
        for e in entries:
            if e.receiver is not last:  # runs of sends to one ref skip the lookup
                last = e.receiver
                q = queues.get(last)
                if q is None:
                    q = queues[last] = deque()
                    woken.append(last)
            q.append(e)
        for rid in woken:
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
        aid = handler.aid
        try:
            packed = pack([aid.namespace, aid.type_name, aid.key, handler.name, args,
                           kwargs or None])
        except TypeError:  # say which argument, as a call would
            copy_args(args)
            copy_packable(kwargs)
            raise
        n = len(packed)
        if n > handler.limit or (self._limit is not None and n > self._limit - 64):
            limit = min(handler.limit, (self._limit or handler.limit + 64) - 64)
            raise TooLarge(f"{aid}.{handler.name}: a send of {n} bytes is over the limit of "
                           f"{limit} bytes: nothing was recorded")
        msg = TURN.msg
        groups = self._groups
        g = groups[-1] if groups else None
        if g is None or g.msg is not msg or (g.entries and g.size + n > ROW_BYTES):
            g = _Group(f"{self._prefix}{self._n:016x}", msg)
            self._n += 1
            groups.append(g)
            self._ctx.ws.write(self._name, g.key, b"")  # goes if the handler raises
        g.entries.append(Entry(f"{g.key}{len(g.entries):08x}", g.key, aid, packed))
        g.size += n + 8

    def checkpoint(self) -> tuple[int, int]:
        """Where the sends stand (``restore`` drops what follows)."""
        return len(self._groups), len(self._groups[-1].entries) if self._groups else 0

    def restore(self, mark: tuple[int, int]) -> None:
        """Forget the sends recorded since ``checkpoint`` (their handler raised; its
        writes were rolled back)."""
        ngroups, nentries = mark
        del self._groups[ngroups:]
        if ngroups:
            del self._groups[-1].entries[nentries:]

    def seal(self) -> Callable[[], None] | None:
        """Fill the rows of handlers that did not raise (their marker is still there)."""
        groups, self._groups = self._groups, []
        ws, name = self._ctx.ws, self._name
        sealed = []
        for g in groups:
            if ws.get(name, g.key) != b"":
                continue  # its handler raised
            if g.entries:
                ws.write(name, g.key, pack([e.packed for e in g.entries]))
                sealed.append(g.entries)
            else:
                ws.delete(name, g.key)
        if not sealed:
            return None
        if not self._armed:
            self._arm()
        self._sealing += 1

        def durable() -> None:
            self._sealing -= 1
            for entries in sealed:
                self._queue(entries)

        return durable

    def _arm(self) -> bytes:
        """Set the wake-up timer ``WAKE_AFTER`` seconds from now (a write of the batch);
        its token."""
        value = encode_timer(now_us() + round(WAKE_AFTER * 1e6), _WAKE_BODY)
        self._ctx.ws.write(TIMERS_MODULE, OUTBOX_WAKE, value)
        self._armed = True
        return value[8:16]

    def on_wake(self) -> bytes | None:
        """The wake-up timer fired (this activation loaded and delivers the backlog):
        set it again while sends are unacknowledged, else remove it. The token of
        the wake-up pending afterwards."""
        if self.backlog or self._sealing:
            return self._arm()
        self._ctx.ws.delete(TIMERS_MODULE, OUTBOX_WAKE)
        self._armed = False
        return None

    def delivered(self, rid: ActorId, n: int) -> list[str]:
        """The receiver committed the oldest ``n`` sends to it: the keys of the rows
        now acknowledged whole (to delete)."""
        q = self.queues[rid]
        rows = self._rows
        done = []
        for _ in range(n):
            row = q.popleft().row
            left = rows[row] - 1
            if left:
                rows[row] = left
            else:
                del rows[row]
                done.append(row)
        if not q:
            del self.queues[rid]
            if not self.queues:
                waiting, self._flushed = self._flushed, []
                for fut in waiting:
                    if not fut.done():
                        fut.set_result(None)
        return done

    def acked(self, keys: list[str]) -> None:
        """Delete the rows of acknowledged sends (a write of the running batch)."""
        ws, name = self._ctx.ws, self._name
        for key in keys:
            ws.delete(name, key)


def _nothing(_rid: ActorId) -> None:
    return None


class OutOfOrder(Exception):
    """A delivery whose predecessor the receiver has not committed (it was lost on the
    way): refused whole, the sender delivers again from the first unacknowledged send."""


async def receive(inst: Any, ctx: StorageContext, sender: list[str], prev: str,
                  entries: list[list[Any]]) -> int:
    """Run the sends in ``entries`` (``[seq, packed]`` from ``sender``, in order, the send
    before them ``prev``: refused with ``OutOfOrder`` unless committed here) on
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
    if prev > hwm:
        raise OutOfOrder(f"sends after {prev} from {aid}: this actor committed up to "
                         f"{hwm or 'none'}")
    handlers = type(inst)._dna_handlers
    ws = ctx.ws
    outbox: BoundOutbox | None = ctx.outbox
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
        ws.begin()  # a failing handler rolls back its own writes only ...
        mark = outbox.checkpoint() if outbox is not None else (0, 0)
        try:
            r = spec.fn(inst, *args, **kwargs) if kwargs else spec.fn(inst, *args)
            if spec.is_async:
                await r
        except Exception:
            ws.rollback()
            if outbox is not None:
                outbox.restore(mark)  # ... and its sends
            log.error("%s.%s failed on send %s from %s (its writes were discarded)",
                      inst._dna_aid, hname, key, aid, exc_info=True)
            continue
        ran += 1
    if top != hwm:
        ws.write(SEEN, skey, pack(top))
        seen[skey] = top
    return ran

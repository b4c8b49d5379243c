"""Batch dispatch: run a drained batch of messages on one actor instance.

Pure-Python twin of ``dispatch.pyx``; both must behave identically.

A message is the tuple ``(handler_index, args, kwargs_or_None, reply_or_None)``.
``reply`` is anything with ``done()``, ``set_result()`` and ``set_exception()``
(an asyncio future locally, a wire reply for remote callers); None for casts.

Per message: ``ws.begin()``; call the handler; an ``async def`` handler is
driven with ``send(None)`` and, if it never suspends, costs no Task. On
success the result is checked (msgpack-serialisable, copied like the wire
would) and the reply released now or parked until the writes it follows are
durable. On failure the message's writes are rolled back and the caller gets
an error built by ``make_error``; a failing cast goes to ``on_cast_error``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import TooLarge
from .framing_py import DEPTH_LIMIT, copy_args, copy_packable


class Turn:
    """Which handler is running right now (one per process: handlers run one at a time
    on a thread's loop). Senders read it to extend the call chain of the message."""

    __slots__ = ("instance", "msg")

    def __init__(self) -> None:
        self.instance: Any = None  # the actor instance whose batch is running, or None
        self.msg: Any = None  # the message whose handler is running, or None


TURN = Turn()


class Dispatcher:
    """Shared by every activation of one actor class."""

    __slots__ = ("fns", "gated", "is_async", "make_error", "on_cast_error")

    def __init__(
        self,
        table: list[Any],
        make_error: Callable[[BaseException], BaseException],
        on_cast_error: Callable[[Any, BaseException], None],
    ) -> None:
        self.fns = [spec.fn for spec in table]  # handler functions by index
        self.gated = [bool(spec.gated) for spec in table]  # reply waits for durability
        self.is_async = [bool(spec.is_async) for spec in table]  # drive with send(None)
        self.make_error = make_error  # handler exception -> exception for the caller
        self.on_cast_error = on_cast_error  # report a failed cast (logging)

    def run(
        self,
        instance: Any,
        batch: list[Any],
        start: int,
        ws: Any,
        gated: list[Any],
        inflight: list[Any],
    ) -> tuple[int, Any, Any] | None:
        """Run ``batch[start:]``. None when done, else ``(i, coro, yielded)``.

        When message ``i`` suspends, the caller drives ``coro`` to its end, then
        calls ``complete`` for it and ``run`` again from ``i + 1``.
        Parked replies go to ``gated`` (waiting for the current write set) or
        ``inflight`` (waiting only for the commit already under way).
        """
        fns = self.fns
        n = len(batch)
        i = start
        turn = TURN
        turn.instance = instance
        while i < n:
            msg = batch[i]
            reply = msg[3]
            if reply is not None and reply.done():  # caller gave up: do not run it
                i += 1
                continue
            idx = msg[0]
            ws.begin()
            turn.msg = msg
            try:
                kwargs = msg[2]
                if kwargs is None:
                    result = fns[idx](instance, *msg[1])
                else:
                    result = fns[idx](instance, *msg[1], **kwargs)
                if self.is_async[idx]:
                    try:
                        yielded = result.send(None)
                    except StopIteration as stop:
                        result = stop.value
                    else:
                        turn.msg = turn.instance = None
                        return (i, result, yielded)
                if reply is not None:
                    result = copy_packable(result)
            except BaseException as exc:  # whatever a handler raises is its caller's error
                self._failed(msg, exc, ws)
            else:
                if reply is not None:
                    self._reply(reply, self.gated[idx], result, ws, gated, inflight)
            i += 1
        turn.msg = turn.instance = None
        return None

    def complete(
        self,
        msg: Any,
        ok: bool,
        value: Any,
        ws: Any,
        gated: list[Any],
        inflight: list[Any],
    ) -> None:
        """Finish a message whose handler suspended: ``value`` is its result or exception."""
        reply = msg[3]
        if ok:
            if reply is None:
                return
            try:
                value = copy_packable(value)
            except BaseException as exc:
                self._failed(msg, exc, ws)
                return
            self._reply(reply, self.gated[msg[0]], value, ws, gated, inflight)
        else:
            self._failed(msg, value, ws)

    def _reply(
        self, reply: Any, gate: bool, result: Any, ws: Any, gated: list[Any], inflight: list[Any]
    ) -> None:
        if gate:
            if len(ws):
                gated.append((reply, result))
                return
            if ws.has_committing:
                inflight.append((reply, result))
                return
        if not reply.done():
            reply.set_result(result)

    def _failed(self, msg: Any, exc: BaseException, ws: Any) -> None:
        ws.rollback()
        reply = msg[3]
        if reply is None:
            self.on_cast_error(msg, exc)
        elif not reply.done():
            reply.set_exception(self.make_error(exc))


# Activation states, shared with the runtime (dna.activation).
ACTIVATING, IDLE, SCHEDULED, RUNNING, BLOCKED, CLOSING, CLOSED = range(7)


class _Done:
    """An awaitable that is already complete: a cast that found room."""

    __slots__ = ()

    def __await__(self) -> Any:
        return iter(())


DONE = _Done()


def args_size(args: tuple[Any, ...], kwargs: Any) -> int:
    """What the bytes and str arguments of a message weigh, nested ones included (the
    rest is small beside a frame): the sender refuses a message no frame could carry,
    local owner or not."""
    total = 0
    for a in (*args, *kwargs.values()) if kwargs else args:
        t = type(a)
        if t is bytes or t is bytearray:
            total += len(a)
        elif t is str:
            n = len(a)
            total += n if n <= 1024 else len(a.encode("utf-8", "surrogatepass"))
        elif t is list or t is tuple or t is dict:
            total += _nested_size(a, 0)
    return total


def _nested_size(v: Any, depth: int) -> int:
    """At least what ``v`` takes packed (each item counted with its largest header);
    past the depth limit 0: copying refuses it anyway."""
    t = type(v)
    if t is bytes or t is bytearray:
        return len(v) + 5
    if t is str:
        n = len(v)
        if v.isascii():
            return n + 5
        top = ord(max(v))  # CPython's kind: bytes per character as stored
        kind = 1 if top <= 0xFF else 2 if top <= 0xFFFF else 4
        return n * (kind + 1) + 5  # UTF-8 needs at most kind + 1 bytes a character
    if depth >= DEPTH_LIMIT:
        return 0
    if t is list or t is tuple:
        return 5 + sum(_nested_size(x, depth + 1) for x in v)
    if t is dict:
        return 5 + sum(_nested_size(k, depth + 1) + _nested_size(x, depth + 1)
                       for k, x in v.items())
    return 9


class SenderBase:
    """State of a ``ref.<handler>`` callable; subclasses add the calling surface."""

    __slots__ = ("aid", "atype", "inbox", "index", "limit", "name", "node", "timeout")

    def __init__(self, node: Any, aid: Any, atype: Any, index: int, timeout: float) -> None:
        # not the ref itself: the ref caches its senders, and a sender keeping the ref
        # made every ref a garbage cycle, freed only by the cyclic collector
        self.node = node  # routes and activates
        self.aid = aid  # whose handler this is (an ActorId)
        self.atype = atype  # the actor's class
        self.index = index  # handler index in the class table
        self.name = atype._dna_table[index].name
        self.timeout = timeout  # call deadline in seconds (unused by casts)
        self.inbox: Any = None  # cached route's inbox; resolved again once closed
        self.limit: int = node.max_message_bytes  # most bytes of bytes/str arguments

    def too_large(self, size: int) -> TooLarge:
        return TooLarge(
            f"{self.aid}.{self.name}: a message of {size} bytes is over the "
            f"{self.limit}-byte limit (max_frame_size): nothing was sent")

    def route(self) -> Any:
        """The inbox of the actor's current route, resolved again when the cached one closed."""
        inbox = self.inbox
        if inbox is None or inbox.closed:
            inbox = self.inbox = self.node.resolve(self.aid, self.atype)
        return inbox


class CastSenderBase(SenderBase):
    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        size = args_size(args, kwargs)
        if size > self.limit:
            raise self.too_large(size)
        msg = (self.index, copy_args(args), copy_packable(kwargs) if kwargs else None, None)
        inbox = self.inbox
        if inbox is None or inbox.closed:
            inbox = self.route()
        fut = inbox.put(msg)
        return DONE if fut is None else fut


def decode_entries(entries: list[Any], handlers: dict[str, Any], hops: int) -> list[Any]:
    """A peer's ``[[handler, args, kwargs], ...]`` as mailbox tuples
    ``(index, args, kwargs_or_None, None, hops)``.

    ``handlers`` maps handler names to specs with an ``index``. Raises
    ``ValueError`` for an entry of the wrong shape and ``LookupError`` (with the
    name) for a handler the class does not have: the caller words the refusal.
    """
    out = []
    for entry in entries:
        if type(entry) is not list or len(entry) != 3:
            raise ValueError("malformed actor message entry")
        hname, args, kwargs = entry
        spec = handlers.get(hname) if type(hname) is str else None
        if spec is None:
            raise LookupError(hname)
        if type(args) is not list or not (kwargs is None or type(kwargs) is dict):
            raise ValueError("malformed actor message: bad arguments")
        out.append((spec.index, tuple(args), kwargs or None, None, hops))
    return out


def cast_entries(msgs: list[Any], start: int, names: list[str]) -> tuple[list[Any], int, int]:
    """The wire entries ``(handler, args, kwargs)`` of the run of casts in ``msgs`` from
    ``start`` that share one hop count: ``(entries, hops, stop)``, where ``stop`` is
    the index of the first message not taken (a call, another hop count, or the end).

    ``names`` are the handler names by index. A cast is a mailbox tuple whose reply
    (item 3) is None; item 4, when present, is its hop count.
    """
    entries: list[Any] = []
    n = len(msgs)
    i = start
    hops = -1
    while i < n:
        msg = msgs[i]
        if msg[3] is not None:
            break
        h = msg[4] if len(msg) > 4 else 0
        if hops < 0:
            hops = h
        elif h != hops:
            break
        entries.append((names[msg[0]], msg[1], msg[2]))  # a tuple: the GC soon untracks it
        i += 1
    return entries, max(hops, 0), i

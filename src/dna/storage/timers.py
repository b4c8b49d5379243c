"""``Timers``: durable timers in an actor's own storage, and the scanner that fires them.

Declare ``timers = Timers()`` on an actor class and define ``on_timer(self,
name, payload)`` (``def`` or ``async def``). In a handler,
``self.timers.set(name, at=... | after=..., payload=..., every=None)`` and
``self.timers.cancel(name)`` are writes of the running batch: committed
atomically with everything else the handler wrote, discarded if it raises.
``await self.timers.get(name)`` and ``await self.timers.list(...)`` see pending
writes first, then the store.

What a caller may rely on:

- A timer fires at or after its due instant on the clock of the node that
  fires it (wall clock, ``time.time()``), as an ordinary message of its actor,
  in order with the actor's other messages, whether the actor is active,
  passivated, or its node drained or died: every live node scans the store's
  due index and sends the actor the firing message through the usual routing
  (the owner runs it; an unowned actor is claimed).
- Firing is at-least-once; the timer's removal (or, with ``every``, its next
  occurrence) commits atomically with the hook's writes, so the hook's effect
  on state is exactly-once. A hook that raises has its writes discarded, the
  timer stays, and the firing is retried with exponential backoff (logged on
  the ``dna.timers`` logger).
- ``every``: the next occurrence is ``due + every``; occurrences missed while
  nothing could fire them are coalesced into one firing.
- Setting a timer under a name replaces any timer of that name.
- Names starting with NUL are the runtime's own (``Outbox`` keeps one to wake a
  sender with unacknowledged sends): they are refused here and never listed.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import inspect
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any, NamedTuple

from .._core import MISSING, pack, unpack
from ..errors import InterfaceError
from ..ids import ActorId
from ..store.base import TIMER_HEADER_BYTES, TIMERS_MODULE, DueTimer, Store, timer_header
from .base import StorageContext, StorageModule

__all__ = ["FIRE_HANDLER", "OUTBOX_WAKE", "RESERVED", "BoundTimers", "Timer", "TimerScanner",
           "Timers", "encode_timer", "fire_handler", "now_us"]

log = logging.getLogger("dna.timers")

FIRE_HANDLER = "_dna_timer"  # the call handler Timers adds to its actor class
_MAX_US = 2**63 - 1  # due instants fit a signed 64-bit column (CQL bigint)
RESERVED = "\x00"  # first character of the runtime's own timer names
OUTBOX_WAKE = "\x00dna.outbox"  # an Outbox's wake-up while sends are unacknowledged
_AFTER_RESERVED = "\x00\U0010ffff"  # every reserved name sorts at or before this


def now_us() -> int:
    """Wall-clock microseconds since the Unix epoch."""
    return time.time_ns() // 1000


class Timer(NamedTuple):
    """A pending timer: ``due`` in seconds since the Unix epoch, ``every`` in seconds."""

    name: str
    due: float
    payload: Any
    every: float | None


class Timers(StorageModule["BoundTimers"]):
    """Declare on an actor class: ``timers = Timers()`` (at most one per class).

    The class defines ``on_timer(self, name, payload)``; it runs when a timer fires.
    """

    def __init__(self) -> None:
        self.name = TIMERS_MODULE  # stored module name, whatever the attribute is called
        self.attr = ""  # the attribute it is declared as

    def __set_name__(self, owner: type, name: str) -> None:
        for other_name, value in vars(owner).items():
            if isinstance(value, Timers) and value is not self:
                raise InterfaceError(
                    f"{owner.__qualname__} declares Timers twice ({other_name}, {name})"
                )
        self.attr = name

    def bind(self, ctx: StorageContext) -> BoundTimers:
        return BoundTimers(ctx)

    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {FIRE_HANDLER: fire_handler}


async def fire_handler(actor: Any, names: list[str]) -> list[Any]:
    """The scanner's firing message (``_dna_timer``), on a class with Timers or an
    Outbox (both bring this one handler): one ``[token, error]`` per name."""
    ctx: StorageContext = actor._dna_storage
    timers: BoundTimers | None = ctx.timers
    if timers is not None:
        return await timers.fire_many(actor, names)
    return [[_fire_reserved(ctx, name), None] for name in names]


def _fire_reserved(ctx: StorageContext, name: str) -> bytes | None:
    """Fire one of the runtime's own timers; the token of what is pending afterwards."""
    if name == OUTBOX_WAKE and ctx.outbox is not None:
        return ctx.outbox.on_wake()  # type: ignore[no-any-return]
    ctx.ws.delete(TIMERS_MODULE, name)  # nothing here owns it (a class changed): removed
    return None


# ---------------------------------------------------------------- values


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be seconds (int or float) or a timedelta, not "
                        f"{type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, not {value!r}")
    return float(value)


def _due(at: Any, after: Any) -> int:
    """The due instant, microseconds since the epoch, from exactly one of at/after."""
    if (at is None) == (after is None):
        raise TypeError("Timers.set needs exactly one of at= (an instant) or after= (a delay)")
    if after is not None:
        delay = _seconds(after, "after")
        if delay < 0:
            raise ValueError(f"after must be >= 0, not {delay}")
        due = now_us() + round(delay * 1e6)
    elif isinstance(at, dt.datetime):
        if at.tzinfo is None:
            raise ValueError("at= must be an aware datetime (with a tzinfo) or epoch seconds")
        due = round(at.timestamp() * 1e6)
    else:
        due = round(_seconds(at, "at") * 1e6)
    if not 0 <= due <= _MAX_US:
        raise ValueError(f"the due instant {due / 1e6} s is out of range")
    return due


def encode_timer(due: int, body: bytes) -> bytes:
    """A stored timer: the header stores index (``timer_header``), then msgpack."""
    return due.to_bytes(8, "big") + os.urandom(8) + body


def _decode(name: str, value: bytes) -> Timer:
    due, _ = timer_header(value)
    payload, every = unpack(value[TIMER_HEADER_BYTES:])
    return Timer(name, due / 1e6, payload, every)


def _check_name(name: Any) -> str:
    if type(name) is not str:
        raise TypeError(f"timer names are str, not {type(name).__name__}")
    if name.startswith(RESERVED):
        raise ValueError(f"timer names starting with NUL are the runtime's own: {name!r}")
    return name


class BoundTimers:
    """The Timers module as one activation sees it."""

    __slots__ = ("_ctx", "_ws")

    def __init__(self, ctx: StorageContext) -> None:
        self._ctx = ctx  # the activation's storage, scoped to its claim
        self._ws = ctx.ws  # pending writes of the running batch
        ctx.timers = self  # the firing message finds it here

    def set(
        self,
        name: str,
        *,
        at: float | dt.datetime | None = None,
        after: float | dt.timedelta | None = None,
        payload: Any = None,
        every: float | dt.timedelta | None = None,
    ) -> None:
        """Set (or replace) timer ``name``: due at ``at`` (epoch seconds or an aware
        datetime) or ``after`` seconds from now, then every ``every`` seconds if
        given. ``payload`` is handed to ``on_timer``; it must be msgpack-serialisable."""
        _check_name(name)
        due = _due(at, after)
        period = None
        if every is not None:
            period = _seconds(every, "every")
            if not period > 0:
                raise ValueError(f"every must be > 0 seconds, not {period}")
        try:
            body = pack([payload, period])
        except (TypeError, ValueError) as exc:
            raise TypeError(f"timer payload is not msgpack-serialisable: {exc}") from None
        value = encode_timer(due, body)
        self._ctx.store.check_row(TIMERS_MODULE, name, value)
        self._ws.write(TIMERS_MODULE, name, value)

    def cancel(self, name: str) -> None:
        """Remove timer ``name`` (nothing if there is none), with this batch."""
        self._ctx.store.check_row(TIMERS_MODULE, _check_name(name), None)
        self._ws.delete(TIMERS_MODULE, name)

    async def get(self, name: str) -> Timer | None:
        """Timer ``name`` as this activation sees it (pending writes first), or None."""
        value = await self._ctx.read(TIMERS_MODULE, _check_name(name))
        return None if value is None else _decode(name, value)

    async def list(
        self, prefix: str = "", limit: int = 100, start_after: str | None = None
    ) -> list[Timer]:
        """Up to ``limit`` timers whose name starts with ``prefix``, in name order,
        after ``start_after`` if given; pending writes included."""
        if type(prefix) is not str or not (start_after is None or type(start_after) is str):
            raise TypeError("prefix and start_after are str")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if prefix.startswith(RESERVED):
            return []  # the runtime's own timers are not listed
        if not prefix and (start_after is None or start_after < _AFTER_RESERVED):
            start_after = _AFTER_RESERVED  # the runtime's own timers are not listed
        rows = await self._ctx.list(TIMERS_MODULE, prefix, limit, start_after)
        return [_decode(k, v) for k, v in rows]

    async def fire_many(self, actor: Any, names: builtins.list[str]) -> builtins.list[Any]:
        """Fire each of ``names`` in turn (``fire``), each one all or nothing: a hook
        that raises has its own writes, sends and its timer's removal undone, the
        others stand. One ``[token, None]`` or ``[None, error]`` per name."""
        ws = self._ws
        outbox = self._ctx.outbox  # sends made by hooks (``self.send``), if the actor has one
        out: builtins.list[Any] = []
        # the settings as they stand before the first hook: read together, not one
        # round trip per timer (a hook's own writes are seen through ``ws`` below)
        before = await self._ctx.read_many(TIMERS_MODULE, names)
        for name in names:
            ws.begin()  # what follows is this timer's alone: rollback() undoes it ...
            mark = outbox.checkpoint() if outbox is not None else (0, 0)
            try:
                out.append([await self.fire(actor, name, before), None])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                ws.rollback()
                if outbox is not None:
                    outbox.restore(mark)  # ... and its sends
                log.warning("on_timer(%r) of %s raised", name, actor._dna_aid, exc_info=True)
                out.append([None, f"{type(exc).__qualname__}: {exc}"])
        return out

    async def fire(self, actor: Any, name: str, before: dict[str, bytes | None]) -> bytes | None:
        """Fire ``name`` if it is due on this clock: remove it (or move it to its
        next occurrence), then run ``actor.on_timer``. Returns the token of the
        setting of ``name`` pending afterwards (None: none). ``before``: the
        settings as the message began (``fire_many``); an earlier hook's writes
        in this message come first."""
        value = self._ws.get(TIMERS_MODULE, name)
        if value is MISSING:
            value = before[name]
        if value is None:
            return None
        due, token = timer_header(value)
        now = now_us()
        if due > now:
            return token  # not yet on this clock
        payload, every = unpack(value[TIMER_HEADER_BYTES:])
        if every:
            step = max(1, round(every * 1e6))
            nxt = due + step
            if nxt <= now:  # missed occurrences coalesce into this firing
                nxt += ((now - nxt) // step + 1) * step
            self._ws.write(TIMERS_MODULE, name, encode_timer(nxt, value[TIMER_HEADER_BYTES:]))
        else:
            self._ws.delete(TIMERS_MODULE, name)
        hook = getattr(actor, "on_timer", None)
        if hook is None:
            raise TypeError(f"{type(actor).__qualname__} declares Timers but no on_timer")
        result = hook(name, payload)
        if result is not None and inspect.isawaitable(result):
            await result
        now_value = self._ws.get(TIMERS_MODULE, name)
        return now_value[8:16] if type(now_value) is bytes else None


# ---------------------------------------------------------------- the scanner

Fire = Callable[[ActorId, list[str]], Awaitable[Any]]
Key = tuple[str, str, str, str]  # (namespace, type_name, key, timer name): str hashes are cached


def _key(e: DueTimer) -> Key:
    a = e.actor
    return (a.namespace, a.type_name, a.key, e.name)


class TimerScanner:
    """A node's background search for due timers (one per hosting node).

    Each round reads at most ``batch`` entries of the store's due index, from
    where the last round stopped (so timers failing at the head of the index
    cannot starve the rest), and sends a firing message for each one not
    already in flight or backing off, at most ``max_inflight`` at a time. A
    firing that fails is retried after ``backoff_base * 2**(failures - 1)``
    seconds, at most ``backoff_max``. Rounds run every ``poll`` seconds, or at
    once while the index has more due entries than a round reads.
    """

    def __init__(self, store: Store, fire: Fire, poll: float = 0.1,
                 types: Callable[[], Collection[str]] = frozenset) -> None:
        if not poll > 0:
            raise ValueError("timer poll interval must be > 0")
        self.store = store
        self.fire = fire  # sends the firing message through the node's routing
        self.types = types  # the actor types this node fires timers of (it loads them)
        self.poll = poll  # seconds between rounds when nothing more is due
        self.batch = 2_000  # index entries read per round
        self.max_inflight = 10_000  # timers whose firing awaits its reply
        self.backoff_base = 1.0  # seconds before the first retry of a failed firing
        self.backoff_max = 60.0  # longest wait between retries
        self.fired = 0  # firings that ran their hook (statistics, tests)
        self.failures = 0  # firings that failed (statistics, tests)
        self.peak_inflight = 0  # most firing messages in flight at once
        self._inflight: set[Key] = set()  # timers whose firing is in flight
        self._tasks: set[asyncio.Task[None]] = set()  # one per actor being sent firings
        self._retry: dict[Key, tuple[int, float]] = {}  # failures, not before
        self._cursor: DueTimer | None = None  # where the next round continues
        self._room = asyncio.Event()  # set when firings finished make room for a round

    async def run(self) -> None:
        """Scan until cancelled; a failing store is logged and retried next round."""
        while True:
            try:
                more = await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("scanning for due timers failed: %r", exc)
                more = False
            self._room.clear()
            if more and len(self._inflight) < self.max_inflight:
                await asyncio.sleep(0)
                continue
            # asyncio.wait, not wait_for: wait_for may swallow a cancellation that
            # comes as the event is set (Python 3.11), and the node could not stop
            waiter = asyncio.ensure_future(self._room.wait())
            try:
                await asyncio.wait([waiter], timeout=None if more else self.poll)
            finally:
                waiter.cancel()

    async def round(self) -> bool:
        """One round; True when the index had more due entries than it read."""
        types = self.types()
        if not types:  # no actor class here can have timers: no store reads
            return False
        # read no more entries than can be sent: a full round re-read the rest later
        limit = min(self.batch, self.max_inflight - len(self._inflight))
        if limit <= 0:
            return True
        whole = self._cursor is None  # this round may read every due entry
        entries = await self.store.due_timers(now_us(), limit, self._cursor, types)
        more = len(entries) == limit
        if whole and not more and self._retry:  # forget retries of timers gone meanwhile
            seen = {_key(e) for e in entries}
            self._retry = {k: v for k, v in self._retry.items() if k in seen}
        self._cursor = entries[-1] if more else None
        loop = asyncio.get_running_loop()
        now = loop.time()
        groups: dict[ActorId, list[DueTimer]] = {}
        for i, e in enumerate(entries):
            key = _key(e)
            if key in self._inflight:
                continue
            retry = self._retry.get(key)
            if retry is not None and retry[1] > now:
                continue
            if len(self._inflight) >= self.max_inflight:
                self._cursor = entries[i - 1] if i else self._cursor
                more = True
                break
            self._inflight.add(key)
            groups.setdefault(e.actor, []).append(e)
        for actor, group in groups.items():
            task = loop.create_task(self._fire(actor, group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.peak_inflight = max(self.peak_inflight, len(self._inflight))
        return more

    async def _fire(self, actor: ActorId, group: list[DueTimer]) -> None:
        """One firing message to ``actor`` for every timer of ``group``."""
        try:
            results = await self.fire(actor, [e.name for e in group])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the message failed (routing, commit): every timer stays
            results = [[None, f"{type(exc).__qualname__}: {exc}"]] * len(group)
            quiet = isinstance(exc, InterfaceError)  # e.g. an actor type this node lacks
        else:
            quiet = False
        finally:
            for e in group:
                self._inflight.discard(_key(e))
            # wake the scan once a useful round fits, not for each actor's firing
            if len(self._inflight) <= self.max_inflight - min(self.batch, self.max_inflight) // 4:
                self._room.set()
        stale = []
        for e, (token, error) in zip(group, results, strict=True):
            key = _key(e)
            if error is not None:
                self._failed(key, e, error, quiet)
            elif token == e.token:  # not due on the owner's clock yet: look again later
                self._retry[key] = (0, asyncio.get_running_loop().time() + self.poll)
            else:
                self._retry.pop(key, None)
                self.fired += 1
                stale.append(e)
        if stale:
            await self._forget(stale)

    def _failed(self, key: Key, e: DueTimer, error: str, quiet: bool) -> None:
        self.failures += 1
        n = self._retry.get(key, (0, 0.0))[0] + 1
        delay = min(self.backoff_base * 2 ** (n - 1), self.backoff_max)
        self._retry[key] = (n, asyncio.get_running_loop().time() + delay)
        # an actor type this process does not know is not this node's to fire: quietly
        log.log(logging.DEBUG if quiet else logging.WARNING,
                "timer %r of %s failed (attempt %d), retrying in %.2f s: %s",
                e.name, e.actor, n, delay, error)

    async def _forget(self, entries: list[DueTimer]) -> None:
        try:
            await self.store.forget_timers(entries)
        except Exception as exc:  # the entries stay: spurious wake-ups, cleaned later
            log.info("dropping stale timer index entries failed: %r", exc)

    async def settled(self) -> None:
        """Wait for the firings in flight now to end, the index clean-up that follows
        each hook included (on CQL, a fired timer's entry goes after its firing's
        reply: a hook having run does not mean its entry is gone yet)."""
        tasks = list(self._tasks)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        """Cancel every firing in flight (their timers stay; they fire again later)."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()

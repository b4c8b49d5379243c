"""One live activation of an actor on this node: mailbox, batches, commits.

State machine (single-threaded, on the node's event loop):

    ACTIVATING --claim+on_activate--> IDLE <--> SCHEDULED --> RUNNING
    RUNNING --batch done--> IDLE / SCHEDULED / BLOCKED (rows wait for the commit in flight)
    any --passivate/drain--> CLOSING --> CLOSED

At most one commit is in flight; the handlers of the next batch run while it
is, and its rows commit right after. A reply parked on the in-flight commit is
released when that commit is durable (output gate). A failed commit fails its
parked replies and those of later writes, then the activation is replaced by
a fresh one built from storage that takes over the queued messages in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ._core import (
    ACTIVATING,
    BLOCKED,
    CLOSED,
    CLOSING,
    IDLE,
    RUNNING,
    SCHEDULED,
    WriteSet,
)
from .errors import ActorError, CommitFailed, DNAError, NotOwner, Overloaded

if TYPE_CHECKING:
    from .actor import Actor
    from .node import Node
    from .store import ActorId, Claim

__all__ = [
    "ACTIVATING",
    "BLOCKED",
    "CLOSED",
    "CLOSING",
    "IDLE",
    "RUNNING",
    "SCHEDULED",
    "Activation",
]

log = logging.getLogger("dna.node")


def handler_error(exc: BaseException) -> BaseException:
    """What the caller of a handler that raised ``exc`` receives."""
    return ActorError(type(exc).__qualname__, str(exc))


async def drive(coro: Any, yielded: Any) -> tuple[bool, Any]:
    """Finish a handler coroutine that suspended on ``yielded`` (a future or None)."""
    while True:
        if yielded is None:
            await asyncio.sleep(0)
        else:
            # the coroutine yielded the future as a Task would see it: take it over
            # the way Task does (clear the flag) and wait for it ourselves
            if getattr(yielded, "_asyncio_future_blocking", False):
                yielded._asyncio_future_blocking = False
            elif not asyncio.isfuture(yielded):
                coro.close()
                return False, RuntimeError(f"handler awaited {yielded!r}, not an asyncio future")
            try:
                await yielded
            except BaseException:  # the coroutine observes the future's outcome itself
                pass
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return True, stop.value
        except Exception as exc:
            return False, exc


class Activation:
    """A live actor instance and everything in flight for it."""

    __slots__ = (
        "aid",
        "atype",
        "claim",
        "commit_task",
        "dispatcher",
        "failed",
        "gated",
        "inflight",
        "instance",
        "last_active",
        "mailbox",
        "node",
        "room_waiters",
        "state",
        "ws",
    )

    def __init__(self, node: Node, aid: ActorId, atype: type[Actor], mailbox: Any) -> None:
        self.node = node  # owning runtime
        self.aid = aid  # cluster-wide name
        self.atype = atype  # user class
        self.mailbox = mailbox  # bounded FIFO of message tuples
        self.state = ACTIVATING
        self.instance: Any = None  # user object, set once activated
        self.claim: Claim | None = None  # ownership proof fencing every commit
        self.ws = WriteSet()  # pending writes: current batch + the commit in flight
        self.dispatcher = node._dispatcher_for(atype)  # shared per class
        self.gated: list[Any] = []  # (reply, result) waiting for the current write set
        self.inflight: list[Any] = []  # (reply, result) waiting for the commit in flight
        self.commit_task: asyncio.Task[None] | None = None  # the commit in flight
        # senders waiting for room, in order; None while nobody waits (saves ~600 B idle)
        self.room_waiters: deque[tuple[asyncio.Future[None] | None, tuple[Any, ...]]] | None = None
        self.last_active = 0.0  # loop time of the last batch, for passivation
        self.failed = False  # a commit failed while a batch was running

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.node._spawn(self._activate())

    async def _activate(self) -> None:
        node = self.node
        try:
            slots = node._claim_slots
            assert slots is not None
            async with slots:
                self.claim = await node.store.claim(self.aid)
            inst = self.atype()
            inst.key = self.aid.key
            inst.namespace = self.aid.namespace
            inst.node = node
            for name, module in self.atype._dna_modules.items():
                setattr(inst, name, module.bind(self))
            self.instance = inst
            await inst.on_activate()
        except BaseException as exc:
            if isinstance(exc, DNAError):
                err: BaseException = exc
            elif isinstance(exc, Exception):
                err = handler_error(exc)
            else:
                raise
            if isinstance(exc, NotOwner) and exc.owner and self.claim is None:
                if await node._redirect(self, exc.owner):
                    self.state = CLOSED
                    return
            log.warning("activation of %s failed: %r", self.aid, exc)
            await self._abandon(err)
            return
        if self.state == ACTIVATING:
            self.state = IDLE
            self.last_active = node.loop.time()
            if len(self.mailbox):
                self.schedule()

    async def _abandon(self, err: BaseException) -> None:
        """This activation cannot run: tell every waiting caller, leave the node."""
        self.state = CLOSED
        self.node._forget(self)
        if self.claim is not None and not isinstance(err, CommitFailed):
            try:
                await self.node.store.release(self.claim)
            except Exception as exc:
                log.debug("release of %s after failure: %r", self.aid, exc)
        self.fail_queued(err)

    def hand_over(self, route: Any) -> None:
        """Forward every queued message to ``route`` (a peer), in order."""
        for msg in self.mailbox.clear():
            route.forward(msg)
        while self.room_waiters:
            fut, msg = self.room_waiters.popleft()
            route.forward(msg)
            if fut is not None and not fut.done():
                fut.set_result(None)

    def fail_queued(self, err: BaseException) -> None:
        dropped = 0
        for msg in self.mailbox.clear():
            reply = msg[3]
            if reply is None:
                dropped += 1
            elif not reply.done():
                reply.set_exception(err)
        while self.room_waiters:
            fut, msg = self.room_waiters.popleft()
            if fut is not None and not fut.done():
                fut.set_exception(err)
        if dropped:
            log.warning("%s: %d queued casts dropped: %r", self.aid, dropped, err)

    # ------------------------------------------------------------ messages

    def schedule(self) -> None:
        self.state = SCHEDULED
        self.node.loop.call_soon(self.run)

    def push_nowait(self, msg: tuple[Any, ...]) -> None:
        if self.room_waiters or not self.mailbox.push(msg):
            raise Overloaded(f"mailbox of {self.aid} is full ({self.mailbox.capacity})")
        if self.state == IDLE:
            self.schedule()

    async def push_wait(self, msg: tuple[Any, ...]) -> None:
        """Queue behind earlier waiters until the mailbox has room (keeps send order)."""
        fut: asyncio.Future[None] = self.node.loop.create_future()
        self.waiters().append((fut, msg))
        await fut

    def waiters(self) -> deque[tuple[asyncio.Future[None] | None, tuple[Any, ...]]]:
        if self.room_waiters is None:
            self.room_waiters = deque()
        return self.room_waiters

    def _admit_waiters(self) -> None:
        waiters = self.room_waiters
        assert waiters is not None
        mailbox = self.mailbox
        while waiters and not mailbox.full:
            fut, msg = waiters.popleft()
            if fut is not None and fut.done():  # the sender gave up
                continue
            mailbox.push(msg)
            if fut is not None:  # None: queued for a peer's cast, nobody waits on it
                fut.set_result(None)

    def run(self) -> None:
        if self.state != SCHEDULED:
            return
        if not self.node.lease_ok():  # fenced: this activation was just dropped
            return
        self.state = RUNNING
        batch = self.mailbox.drain(self.node.max_batch)
        if self.room_waiters:
            self._admit_waiters()
        r = self.dispatcher.run(self.instance, batch, 0, self.ws, self.gated, self.inflight)
        if r is None:
            self._after_batch(len(batch))
        else:
            self.node._spawn(self._continue(batch, r))

    async def _continue(self, batch: list[Any], r: Any) -> None:
        disp = self.dispatcher
        while r is not None:
            i, coro, yielded = r
            ok, value = await drive(coro, yielded)
            disp.complete(batch[i], ok, value, self.ws, self.gated, self.inflight)
            r = disp.run(self.instance, batch, i + 1, self.ws, self.gated, self.inflight)
        self._after_batch(len(batch))

    def _after_batch(self, n: int) -> None:
        node = self.node
        node.stats.batch(n)
        self.last_active = node.loop.time()
        if self.failed:
            self._restart()
            return
        if len(self.ws):
            if self.commit_task is not None:
                self.state = BLOCKED
                return
            self._start_commit()
        self._next()

    def _next(self) -> None:
        if len(self.mailbox):
            self.schedule()
        else:
            self.state = IDLE

    # ------------------------------------------------------------ commits

    def _start_commit(self) -> None:
        rows = self.ws.take()
        self.inflight = self.gated  # the previous commit released its own replies
        self.gated = []
        self.commit_task = self.node.loop.create_task(self._commit(rows))

    async def _commit(self, rows: list[Any]) -> None:
        assert self.claim is not None
        t0 = time.perf_counter()
        try:
            await self.node.store.commit(self.claim, rows)
        except Exception as exc:
            self.commit_task = None
            self._commit_failed(exc, len(rows))
            return
        self.node.stats.commit(len(rows), time.perf_counter() - t0)
        self.commit_task = None
        self.ws.settle()
        replies = self.inflight
        self.inflight = []
        for reply, result in replies:
            if not reply.done():
                reply.set_result(result)
        if self.state == BLOCKED:
            self._start_commit()
            self._next()

    def _commit_failed(self, exc: Exception, n: int) -> None:
        log.warning("commit of %d writes for %s failed: %r", n, self.aid, exc)
        err = CommitFailed(f"commit of {self.aid} failed: {exc}")
        err.__cause__ = exc
        self._fail_parked(err)  # later writes built on the lost ones
        if self.state == RUNNING:  # a suspended batch is still going: restart after it
            self.failed = True
        elif self.state != CLOSING:
            self._restart()

    def _fail_parked(self, err: BaseException) -> None:
        """Fail every reply parked on a commit and drop every pending write."""
        for reply, _ in self.inflight + self.gated:
            if not reply.done():
                reply.set_exception(err)
        self.inflight = []
        self.gated = []
        self.ws.clear()

    def _restart(self) -> None:
        """Replace this activation by a fresh one from storage, keeping the queue."""
        self.state = CLOSED
        self._fail_parked(CommitFailed(f"{self.aid} restarted after a failed commit"))
        self.node._forget(self)
        self.node._takeover(self)

    def fence(self, err: BaseException) -> None:
        """Drop this activation without touching the store: ownership is in doubt."""
        self.state = CLOSED
        self._fail_parked(err)
        if self.commit_task is not None:
            self.commit_task.cancel()
        self.node._forget(self)
        self.fail_queued(err)

    # ------------------------------------------------------------ passivation

    def idle(self, now: float, after: float) -> bool:
        return (
            self.state == IDLE
            and self.commit_task is None
            and not len(self.mailbox)
            and now - self.last_active >= after
        )

    async def passivate(self, release: bool = True) -> None:
        """Stop this activation: on_passivate, flush writes, release ownership."""
        if self.state >= CLOSING:
            return
        while self.state in (RUNNING, SCHEDULED, BLOCKED, ACTIVATING):  # noqa: ASYNC110
            await asyncio.sleep(0.001)  # rare (drain, stop): let the current turn finish
        if self.state >= CLOSING:
            return
        self.state = CLOSING
        try:
            await self.instance.on_passivate()
        except Exception as exc:
            log.warning("%s.on_passivate raised %r", self.aid, exc)
            self.ws.rollback()
        if self.commit_task is not None:
            await asyncio.shield(self.commit_task)
        if len(self.ws) and self.claim is not None:
            rows = self.ws.take()
            try:
                await self.node.store.commit(self.claim, rows)
            except Exception as exc:
                log.warning("final commit of %s failed: %r", self.aid, exc)
        released = False
        if release and self.claim is not None:
            try:
                await self.node.store.release(self.claim)
                released = True
            except Exception as exc:
                log.warning("release of %s failed: %r", self.aid, exc)
        self.state = CLOSED
        self.node._forget(self)
        if len(self.mailbox) or self.room_waiters:
            if released or not release:
                self.node._takeover(self)

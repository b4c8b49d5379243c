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
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ._core import (
    ACTIVATING,
    BLOCKED,
    CLOSED,
    CLOSING,
    IDLE,
    MISSING,
    RUNNING,
    SCHEDULED,
    TURN,
    Inbox,
    WriteSet,
)
from .delivery import Delivery, attach
from .errors import (
    ActorError,
    CommitFailed,
    CommitUnknown,
    DNAError,
    NotOwner,
    StoreUnavailable,
)
from .storage.base import DESTROY, StorageContext

if TYPE_CHECKING:
    from .actor import Actor
    from .ids import ActorId
    from .stats import Stats
    from .store import Claim, Store

__all__ = [
    "ACTIVATING",
    "BLOCKED",
    "CLOSED",
    "CLOSING",
    "IDLE",
    "RUNNING",
    "SCHEDULED",
    "Activation",
    "Host",
]

log = logging.getLogger("dna.node")


class Host(Protocol):
    """What an activation needs from the node that hosts it (and nothing more)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def store(self) -> Store: ...
    @property
    def stats(self) -> Stats: ...
    @property
    def max_batch(self) -> int: ...
    @property
    def mailbox_size(self) -> int: ...
    @property
    def new_future(self) -> Callable[[], asyncio.Future[Any]]: ...  # one bound method, shared
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...
    async def claim(self, aid: ActorId) -> Claim: ...
    def dispatcher_for(self, atype: type[Actor]) -> Any: ...
    def setup_instance(self, inst: Actor, aid: ActorId) -> None: ...
    def lease_ok(self) -> bool: ...
    def forget(self, act: Activation) -> None: ...
    def takeover(self, old: Activation) -> None: ...
    async def redirect(self, act: Activation, owner: str) -> bool: ...


class _Done:
    """The reply of a message taken out of a running batch: done, so it is skipped."""

    __slots__ = ()

    def done(self) -> bool:
        return True


_SKIP = (0, (), None, _Done())  # stands for a deferred message in its batch


def _describe(exc: BaseException) -> str:
    try:
        return str(exc)
    except BaseException:  # an exception whose __str__ raises must not wedge the actor
        return f"<unprintable {type(exc).__qualname__}>"


def handler_error(exc: BaseException) -> BaseException:
    """What the caller of a handler that raised ``exc`` receives: DNA's own errors keep
    their type (and so their retryability); anything else becomes ``ActorError``."""
    if isinstance(exc, DNAError):
        return exc
    return ActorError(type(exc).__qualname__, _describe(exc))


def _cancelling() -> bool:
    """True when the running task itself was asked to cancel (the node is stopping)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return task is not None and (cancelling() > 0 if cancelling is not None else True)


async def drive(coro: Any, yielded: Any, instance: Any, msg: Any) -> tuple[bool, Any]:
    """Finish a handler coroutine that suspended on ``yielded`` (a future or None).

    Whatever the handler raises is its result; only a cancellation of the task
    driving it (the node stopping) propagates.
    """
    turn = TURN
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
            except asyncio.CancelledError:
                if _cancelling():
                    coro.close()
                    raise
            except BaseException:  # the coroutine observes the future's outcome itself
                pass
        turn.instance = instance
        turn.msg = msg
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return True, stop.value
        except BaseException as exc:  # whatever a handler raises is its caller's error
            return False, exc
        finally:
            turn.instance = turn.msg = None


def _asleep() -> None:
    """The wake-up of a closed activation's inbox: nobody is there to wake."""


class Activation:
    """A live actor instance and everything in flight for it."""

    __slots__ = (
        "aid",
        "atype",
        "batch",
        "claim",
        "commit_task",
        "deferred",
        "dispatcher",
        "failed",
        "gated",
        "host",
        "inbox",
        "inflight",
        "instance",
        "last_active",
        "running",
        "sends",
        "state",
        "storage",
        "ws",
    )

    def __init__(self, host: Host, aid: ActorId, atype: type[Actor]) -> None:
        # Every object an activation keeps is traced by the cyclic collector (a young,
        # then a middle collection, then full ones): a burst of activations is
        # bounded by that (bench/activations.py --gc both). So nothing here is made
        # per activation that can be shared: the node's one ``new_future``, an empty
        # tuple for ``deferred``, the activation itself for the instance's destroy().
        self.host = host  # the node, through the narrow interface above
        self.aid = aid  # cluster-wide name
        self.atype = atype  # user class
        self.inbox = Inbox(host.mailbox_size, host.new_future)  # where messages enter
        self.inbox.wake = self.schedule
        self.state = ACTIVATING
        self.instance: Any = None  # user object, set once activated
        self.claim: Claim | None = None  # ownership proof fencing every commit
        self.ws = WriteSet()  # pending writes: current batch + the commit in flight
        self.dispatcher = host.dispatcher_for(atype)  # shared per class
        self.gated: list[Any] = []  # (reply, result) waiting for the current write set
        self.inflight: list[Any] = []  # (reply, result) waiting for the commit in flight
        self.commit_task: asyncio.Task[None] | None = None  # the commit in flight
        self.running: list[Any] | None = None  # a batch whose handler suspended, until done
        self.last_active = 0.0  # loop time of the last batch, for passivation
        self.failed = False  # a commit failed while a batch was running
        self.batch: list[Any] | None = None  # the batch being dispatched (destroy defers its rest)
        # messages after a destroy() of the running batch (a list once there are any)
        self.deferred: Sequence[Any] = ()
        self.storage: StorageContext | None = None  # what storage modules bind to
        self.sends: Delivery | None = None  # delivers committed self.send()s (an Outbox)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.host.spawn(self._activate())

    async def _activate(self) -> None:
        host = self.host
        try:
            self.claim = await host.claim(self.aid)
            inst = self.atype()
            host.setup_instance(inst, self.aid)
            ctx = self.storage = StorageContext(self.ws, host.store, self.claim)
            inst._dna_storage = ctx
            inst._dna_activation = self
            for name, module in self.atype._dna_modules.items():
                setattr(inst, name, module.bind(ctx))
            await ctx.load()
            self.instance = inst
            self.sends = attach(self, inst)
            await inst.on_activate()
        except asyncio.CancelledError:
            if _cancelling():
                raise
            await self._abandon(handler_error(asyncio.CancelledError("on_activate cancelled")))
            return
        except BaseException as exc:
            err = handler_error(exc)
            if isinstance(exc, NotOwner) and exc.owner and self.claim is None:
                if await host.redirect(self, exc.owner):
                    self.state = CLOSED
                    return
            log.warning("activation of %s failed: %r", self.aid, exc)
            await self._abandon(err)
            return
        if self.state == ACTIVATING:
            self.last_active = host.loop.time()
            self._next()

    async def _abandon(self, err: BaseException) -> None:
        """This activation cannot run: tell every waiting caller, leave the node."""
        self.state = CLOSED
        self.host.forget(self)
        self.inbox.closed = True
        if self.claim is not None and not isinstance(err, (CommitFailed, CommitUnknown)):
            try:
                await self.host.store.release(self.claim)
            except Exception as exc:
                log.debug("release of %s after failure: %r", self.aid, exc)
        self.fail_queued(err)

    def fail_queued(self, err: BaseException) -> None:
        dropped = self.inbox.fail(err)
        if dropped:
            log.warning("%s: %d queued casts dropped: %r", self.aid, dropped, err)

    # ------------------------------------------------------------ messages

    def schedule(self) -> None:
        if self.state == CLOSING:  # passivating: its queue goes to whoever takes over
            return
        self.state = SCHEDULED
        self.host.loop.call_soon(self.run)

    def run(self) -> None:
        if self.state != SCHEDULED:
            return
        if not self.host.lease_ok():  # fenced: this activation was just dropped
            return
        self.state = RUNNING
        batch = self.batch = self.inbox.take(self.host.max_batch)
        r = self.dispatcher.run(self.instance, batch, 0, self.ws, self.gated, self.inflight)
        if r is None:
            self._after_batch(len(batch))
        else:
            self.host.spawn(self._continue(batch, r))

    async def _continue(self, batch: list[Any], r: Any) -> None:
        disp = self.dispatcher
        self.running = batch
        while r is not None:
            i, coro, yielded = r
            ok, value = await drive(coro, yielded, self.instance, batch[i])
            disp.complete(batch[i], ok, value, self.ws, self.gated, self.inflight)
            r = disp.run(self.instance, batch, i + 1, self.ws, self.gated, self.inflight)
        self.running = None
        self._after_batch(len(batch))

    def _after_batch(self, n: int) -> None:
        self.batch = None
        if self.deferred:  # held back by a destroy(): they run (and count) later
            n -= len(self.deferred)
            self._requeue_deferred()
        if self.state == CLOSED:  # fenced while a handler ran: its writes are dropped
            self.ws.clear()
            return
        host = self.host
        host.stats.batch(n, self.atype)  # per type: dna.metrics
        self.last_active = host.loop.time()
        if self.failed:
            self._restart()
            return
        if len(self.ws):
            if self.ws.get(*DESTROY) is not MISSING:  # self.destroy() in this batch
                self.state = CLOSING  # no further batch, no passivation
                self.host.spawn(self._destroy())
                return
            if self.commit_task is not None:
                self.state = BLOCKED
                return
            self._start_commit()
        self._next()

    def _next(self) -> None:
        self.state = IDLE
        self.inbox.arm()  # schedules at once if messages wait

    # ------------------------------------------------------------ commits

    def _take(self) -> tuple[list[Any], list[Any]]:
        """The rows of the next commit, and what to run once they are durable."""
        storage = self.storage
        durable = storage.seal() if storage is not None and storage.attached else []
        return self.ws.take(), durable

    def _start_commit(self) -> None:
        rows, durable = self._take()
        self.inflight = self.gated  # the previous commit released its own replies
        self.gated = []
        self.commit_task = self.host.loop.create_task(self._commit(rows, durable))

    async def _commit(self, rows: list[Any], durable: list[Any]) -> None:
        assert self.claim is not None
        t0 = time.perf_counter()
        try:
            await self.host.store.commit(self.claim, rows)
        except Exception as exc:
            self.commit_task = None
            self._commit_failed(exc, len(rows))
            return
        self.host.stats.commit(len(rows), time.perf_counter() - t0)
        self.commit_task = None
        self.ws.settle()
        for f in durable:  # storage modules' state beside their rows; sends to deliver
            f()
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
        err: CommitFailed | CommitUnknown
        if isinstance(exc, CommitUnknown):
            err = CommitUnknown(f"commit of {self.aid}: outcome unknown: {exc}")
        else:
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
        self.host.forget(self)
        self.host.takeover(self)

    def fence(self, err: BaseException) -> None:
        """Drop this activation without touching the store: ownership is in doubt."""
        self.state = CLOSED
        self._fail_parked(err)
        for msg in self.running or ():  # a batch still running: its callers hear now
            reply = msg[3]
            if reply is not None and not reply.done():
                reply.set_exception(err)
        self.running = None
        if self.commit_task is not None:
            self.commit_task.cancel()
        self.host.forget(self)
        self.inbox.closed = True
        self.fail_queued(err)

    # ------------------------------------------------------------ destroy

    def defer_rest(self) -> None:
        """The running message called ``destroy()``: the messages after it in this
        batch do not run on this instance. They wait, in order, at the front of the
        queue: for the fresh activation, or for this one if the handler raises."""
        batch, msg = self.batch, TURN.msg
        if batch is None or msg is None:
            return
        for i in range(len(batch) - 1, -1, -1):
            if batch[i] is msg:
                break
        else:
            return
        self.deferred = [*self.deferred, *batch[i + 1:]]
        for j in range(i + 1, len(batch)):
            batch[j] = _SKIP  # the dispatcher passes over a message whose reply is done

    def _requeue_deferred(self) -> None:
        """Put the deferred messages back in front of the queue (a new inbox that
        adopts the old one; senders holding the old one resolve again)."""
        msgs, self.deferred = self.deferred, ()
        if self.state == CLOSED:  # fenced meanwhile: they cannot run here
            err = StoreUnavailable(f"{self.aid} lost its ownership: retry")
            for m in msgs:
                if m[3] is not None and not m[3].done():
                    m[3].set_exception(err)
            return
        inbox = Inbox(self.host.mailbox_size, self.host.new_future)
        inbox.wake = self.schedule
        for m in msgs:
            inbox.push(m)
        inbox.adopt(self.inbox)
        self.inbox = inbox

    async def _destroy(self) -> None:
        """The batch called ``destroy()``: once the commit in flight (earlier
        batches) is durable, remove the actor in one fenced store operation
        instead of committing the batch's writes, release the batch's replies,
        and leave: queued messages go to a fresh activation."""
        if self.commit_task is not None:
            try:
                await asyncio.shield(self.commit_task)
            except asyncio.CancelledError:
                if _cancelling() or self.state == CLOSED:
                    return
        if self.state == CLOSED:  # fenced meanwhile
            return
        replies, self.gated = self.gated, []
        lost = self.ws.get(*DESTROY) is MISSING  # the earlier commit failed: all undone
        self.ws.clear()
        assert self.claim is not None
        err: BaseException | None = None
        try:
            if not lost:
                await self.host.store.destroy(self.claim)
        except asyncio.CancelledError:  # the node stops: the outcome is not known
            err = CommitUnknown(f"destroy of {self.aid}: the node stopped meanwhile")
            for reply, _ in replies:
                if not reply.done():
                    reply.set_exception(err)
            raise
        except Exception as exc:
            log.warning("destroy of %s failed: %r", self.aid, exc)
            err = CommitFailed(f"destroy of {self.aid} failed: {exc}")
            err.__cause__ = exc
        for reply, result in replies:
            if not reply.done():
                if err is None and not lost:
                    reply.set_result(result)
                else:
                    reply.set_exception(err or CommitFailed(f"{self.aid}: an earlier commit "
                                                            "failed; the destroy was dropped"))
        self.state = CLOSED
        self.host.forget(self)
        if len(self.inbox):
            self.host.takeover(self)  # a fresh activation (a fresh claim) takes the queue
        else:
            self.inbox.closed = True
        self._unlink()

    # ------------------------------------------------------------ passivation

    async def _final_commit(self, acked: list[str] | None = None) -> None:
        """Commit what is pending (and delete acknowledged sends) before release."""
        if acked and self.sends is not None:
            self.sends.outbox.acked(acked)
        if not len(self.ws) or self.claim is None:
            return
        rows, durable = self._take()
        try:
            await self.host.store.commit(self.claim, rows)
        except Exception as exc:
            log.warning("final commit of %s failed: %r", self.aid, exc)
            return
        self.ws.settle()
        for f in durable:
            f()

    def idle(self, now: float, after: float) -> bool:
        return (
            self.state == IDLE
            and self.commit_task is None
            and not len(self.inbox)
            and now - self.last_active >= after
            and (self.sends is None or self.sends.idle)
        )

    async def passivate(self, release: bool = True) -> bool:
        """Stop this activation: on_passivate, flush writes, release ownership.
        True when this call released the name in the store."""
        if self.state >= CLOSING:
            return False
        while self.state in (RUNNING, SCHEDULED, BLOCKED, ACTIVATING):  # noqa: ASYNC110
            await asyncio.sleep(0.001)  # rare (drain, stop): let the current turn finish
        if self.state >= CLOSING:
            return False
        self.state = CLOSING
        try:
            await self.instance.on_passivate()
        except asyncio.CancelledError:
            if _cancelling():
                raise
            log.warning("%s.on_passivate raised CancelledError", self.aid)
            self.ws.rollback()
        except BaseException as exc:  # a user hook must not keep the node from stopping
            log.warning("%s.on_passivate raised %s: %s", self.aid, type(exc).__qualname__,
                        _describe(exc))
            self.ws.rollback()
        if self.commit_task is not None:
            await asyncio.shield(self.commit_task)
        await self._final_commit()
        if self.sends is not None and self.claim is not None:
            await self._final_commit(await self.sends.finish())
        released = False
        if release and self.claim is not None:
            try:
                await self.host.store.release(self.claim)
                released = True
            except Exception as exc:
                log.warning("release of %s failed: %r", self.aid, exc)
        self.state = CLOSED
        self.host.stats.passivations += 1  # dna.metrics
        self.host.forget(self)
        if len(self.inbox) and (released or not release):
            self.host.takeover(self)  # a fresh route adopts the queue, in order
        else:
            self.inbox.closed = True
            if len(self.inbox):  # still ours in the store: nobody else may run them yet
                self.fail_queued(StoreUnavailable(f"{self.aid} could not be released: retry"))
        self._unlink()
        return released

    def _unlink(self) -> None:
        """Closed for good (passivated, destroyed; the inbox closed or adopted): cut
        the references that lead back here, the inbox's wake-up and the instance's
        own, so the activation and what it kept go by reference counting once the
        node forgets it. As cycles they were left to the collector: 11 objects per
        passivated activation (12 with a storage module) for each young collection
        to trace, under passivation churn."""
        self.inbox.wake = _asleep
        inst = self.instance
        if inst is not None:
            inst.__dict__.pop("_dna_activation", None)  # destroy() is refused from now on

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
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar, overload

from . import _gc
from ._core import TURN, Dispatcher, Inbox
from ._limit import Limiter
from ._placement import with_weight
from ._rebalance import Rebalancer
from .activation import CLOSED, CLOSING, Activation, handler_error
from .actor import KIND_CALL, Actor, ActorRef, actor_type, timer_types
from .catalog import CatalogPage, inspect_store, list_actors
from .cluster import Cluster, RemoteRoute
from .errors import InterfaceError
from .ids import ActorId
from .senders import CallSender, CastSender
from .stats import Stats
from .storage.timers import FIRE_HANDLER, TimerScanner
from .store import Claim, NodeRecord, Store

__all__ = ["Node"]

log = logging.getLogger("dna.node")

A = TypeVar("A", bound=Actor)


def _not_started() -> asyncio.Future[Any]:
    raise InterfaceError("the node is not started: use `async with Node(...)`")


def new_node_id() -> str:
    """A random 64-bit id plus the start time: unique even across fast restarts."""
    return f"{uuid.uuid4().int >> 64:016x}-{int(time.time() * 1000):x}"


class Node:
    """Hosts activations and routes messages to them.

    ``async with dna.Node(store=dna.SQLiteStore("app.db")) as node:``

    Settings: ``mailbox_size`` (bounded mailbox per activation: casts wait,
    ``nowait`` casts raise ``Overloaded`` when full), ``max_batch`` (messages
    per batch and commit), ``call_timeout`` (default deadline, seconds),
    ``passivate_after`` (idle seconds before an activation is removed),
    ``stop_timeout`` (how long ``stop()``/``drain()`` wait for busy handlers),
    ``timer_poll`` (seconds between scans for due timers: ``dna.storage.Timers``),
    ``gc_threshold`` (the cyclic collector's young-generation threshold while
    the node runs, where the process kept CPython's default of 700: a burst of
    activations then skips repeated full collections, ``dna._gc``; None leaves
    the collector alone).

    Cluster: ``listen="host:port"`` serves peers over TCP, authenticated by
    ``secret`` (required off loopback unless ``insecure``; TLS with ``ssl``);
    ``host_actors=False`` makes a client node that routes every name to a peer.
    ``weight`` is this node's share of placement (a node of weight 2 wins twice
    the names of a node of weight 1); ``rebalance_rate`` (actors/s, 0: off)
    hands the activations above this node's share to peers below theirs, one
    round every ``rebalance_interval`` seconds (``dna._rebalance``).
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
        listen: str | None = None,
        secret: bytes | str | None = None,
        ssl: Any = None,
        client_ssl: Any = None,
        insecure: bool = False,
        max_frame_size: int = 16 * 1024 * 1024,
        host_actors: bool = True,
        fence_fraction: float = 0.5,
        max_claims_in_flight: int = 256,
        stop_timeout: float = 10.0,
        failed_call_log_level: int = logging.INFO,
        weight: float = 1.0,
        rebalance_rate: float = 0.0,
        rebalance_interval: float = 1.0,
        timer_poll: float = 0.1,
        gc_threshold: int | None = _gc.DEFAULT_THRESHOLD,
    ) -> None:
        if store is None:
            from .store.sqlite import SQLiteStore

            store = SQLiteStore(os.path.abspath("dna.db"))
        if mailbox_size < 1 or max_batch < 1:
            raise ValueError("mailbox_size and max_batch must be at least 1")
        if call_timeout <= 0 or passivate_after <= 0 or stop_timeout <= 0:
            raise ValueError("call_timeout, passivate_after and stop_timeout must be positive")
        _gc.check(gc_threshold)
        self.store = store
        self.gc_threshold = gc_threshold
        self._gc_held = False
        self.mailbox_size = mailbox_size
        self.max_batch = max_batch
        self.call_timeout = call_timeout
        self.passivate_after = passivate_after
        self.stop_timeout = stop_timeout
        # room left in a frame for a message's bytes and str arguments (names, headers)
        self.max_message_bytes = max_frame_size - 64 * 1024
        self.failed_call_log_level = failed_call_log_level  # handler exceptions, with traceback
        # placement weight: this node wins weight/sum(weights) of new names (_placement)
        self.node_id = with_weight(node_id or new_node_id(), weight)
        self._moving: dict[ActorId, NodeRecord] = {}  # hand-overs under way: their peer
        self.rebalancer = (Rebalancer(self, rebalance_rate, rebalance_interval)
                           if rebalance_rate > 0 and host_actors and listen is not None
                           and store.per_actor_claims else None)
        self.stats = Stats()
        self._routes: dict[ActorId, Activation | RemoteRoute] = {}
        self._dispatchers: dict[type[Actor], Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.new_future: Callable[[], asyncio.Future[Any]] = _not_started  # set by start()
        self._sweeper: asyncio.Task[None] | None = None
        # durable timers: finds due ones in the store, fires them through routing
        self.timers = TimerScanner(store, self._fire_timer, timer_poll, timer_types)
        self._timer_task: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False
        self.draining = False
        self.host_actors = host_actors  # False: a client node, every name lives on a peer
        # Lease stores (CQL): peers reclaim our names once our heartbeat is `lease` old;
        # we stop serving at `fence_fraction * lease`, well before that.
        fence_after: float | None = None
        lease = store.lease
        if lease is not None:
            if not 0 < fence_fraction < 1:
                raise ValueError("fence_fraction must be between 0 and 1")
            fence_after = lease * fence_fraction
            beat = store.heartbeat_interval
            if beat is not None and not beat * 2 <= fence_after:
                raise InterfaceError(
                    f"heartbeat_interval {beat} s is too long for a lease of {lease} s: "
                    f"a node fences itself after {fence_after} s without a heartbeat"
                )
        if max_claims_in_flight < 1:
            raise ValueError("max_claims_in_flight must be at least 1")
        # Claims are pipelined up to this many; more would queue the store's own
        # heartbeat behind them (a stale heartbeat makes a lease node fence itself).
        self.max_claims_in_flight = max_claims_in_flight
        self._claim_slots: Limiter | None = None
        if not host_actors and listen is None:
            raise InterfaceError("a node that hosts no actors needs listen= to reach its peers")
        if isinstance(secret, str):
            secret = secret.encode()
        self.cluster = Cluster(
            self, listen=listen, secret=secret, ssl=ssl, client_ssl=client_ssl,
            insecure=insecure, max_frame_size=max_frame_size, fence_after=fence_after,
            window=mailbox_size,
        )

    # ------------------------------------------------------------ lifecycle

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise InterfaceError("the node is not started: use `async with Node(...)`")
        return self._loop

    @property
    def running(self) -> bool:
        """Started and not stopped: routes messages."""
        return self._started and not self._stopped

    async def start(self) -> None:
        if self._started:
            raise InterfaceError("node already started")
        self._loop = asyncio.get_running_loop()
        self.new_future = self._loop.create_future  # one bound method for every inbox
        self._claim_slots = Limiter(self.max_claims_in_flight)
        self._gc_held = _gc.acquire(self.gc_threshold)
        try:
            await self.cluster.start()
            try:
                await self.store.open(self.node_id, self.cluster.address)
            except BaseException:
                await self.cluster.close()
                raise
        except BaseException:
            self._release_gc()
            raise
        self._started = True
        if not self.host_actors:  # a client: peers never place a name here
            await self.store.set_draining(True)
        await self.cluster.joined()
        self._sweeper = self._loop.create_task(self._sweep())
        if self.rebalancer is not None:
            self.spawn(self.rebalancer.run())
        if self.host_actors:
            self._timer_task = self._loop.create_task(self.timers.run())

    async def stop(self) -> None:
        """Finish in-flight batches, flush writes, release every owned name, close the store.

        Returns within about ``stop_timeout`` seconds whatever handlers do: an
        activation still busy then is dropped without a final commit (its
        callers get an error; on a lease store its names pass on at lease expiry).
        """
        if not self._started or self._stopped:
            return
        self._stopped = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self._stop_timers()
        await self._passivate_all()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.stop_timeout)
        try:
            await self.store.close()
            await self.cluster.close()
        finally:
            self._release_gc()

    def _release_gc(self) -> None:
        held, self._gc_held = self._gc_held, False
        if held:
            _gc.release()

    async def _passivate_all(self) -> None:
        acts = self.local_activations()
        if not acts:
            return
        tasks = [self.loop.create_task(a.passivate()) for a in acts]
        done, busy = await asyncio.wait(tasks, timeout=self.stop_timeout)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                log.warning("passivation failed: %r", t.exception())
        if busy:
            log.warning("%d activations still busy after %.1f s: dropped", len(busy),
                        self.stop_timeout)
            err = InterfaceError(f"node {self.node_id} stopped with this call still running")
            for t in busy:
                t.cancel()
            for act in acts:
                if act.state != CLOSED:
                    act.fence(err)

    async def drain(self) -> None:
        """Leave the cluster gracefully: take no new activations, finish in-flight
        batches, flush and release every owned name so peers take over at once."""
        if not self._started or self._stopped:
            return
        self.draining = True
        await self._stop_timers()  # peers fire them from now on
        await self.store.set_draining(True)
        await self.cluster.refresh_peers()
        await self._passivate_all()
        await self.stop()

    @property
    def address(self) -> str | None:
        """Where peers reach this node, when it listens."""
        return self.cluster.address or None

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ references

    @overload
    def ref(self, atype: type[A], key: str, namespace: str = "default") -> A: ...
    @overload
    def ref(self, atype: str, key: str, namespace: str = "default") -> Any: ...
    def ref(self, atype: type[A] | str, key: str, namespace: str = "default") -> Any:
        """A handle on the actor ``(namespace, type, key)``; nothing is activated yet.

        Typed as the actor class, so the type checker checks ``await ref.handler(...)``
        against the handler's signature (it is a ``dna.ActorRef`` at run time).

        Keep refs: a ref routes afresh by itself whenever the actor moves (passivation,
        a peer's death, draining), so a kept ref works again once the name is served.
        """
        cls: type[Actor] = actor_type(atype) if isinstance(atype, str) else atype
        if not (isinstance(cls, type) and issubclass(cls, Actor)) or cls is Actor:
            raise InterfaceError(f"{atype!r} is not a dna.Actor subclass")
        if not isinstance(key, str) or not isinstance(namespace, str):
            raise TypeError("actor key and namespace must be str")
        for what, text in (("key", key), ("namespace", namespace)):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"actor {what} {text!r} is not valid Unicode text "
                                 "(a lone surrogate?)") from None
        aid = ActorId(namespace, cls.type_name, key)
        return cls._dna_ref_class(self, cls, aid)

    # ------------------------------------------------------------ the actor catalog

    async def catalog(
        self,
        type: type[Actor] | str | None = None,  # noqa: A002 (the issue's signature)
        namespace: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> CatalogPage:
        """Actors that exist in storage (active or not), of ``type`` (a class or its
        ``type_name``) and in ``namespace`` when given: up to ``limit`` entries after
        the cursor ``after`` (a page's ``next``). Walking pages until ``next`` is
        None lists every actor that exists throughout exactly once."""
        return await list_actors(self.store, type, namespace, after, limit)

    async def inspect(self, ref: Any, limit: int = 1000) -> dict[str, list[tuple[str, Any]]]:
        """An actor's committed storage: module name -> ``(key, decoded value)`` in
        key order, at most ``limit`` rows in all. Writes not committed yet are not
        shown; a destroyed or never-created actor has none."""
        return await inspect_store(self.store, ref, limit) or {}

    async def destroy(self, ref: Any) -> None:
        """Delete the actor for good, as if a handler of it called ``self.destroy()``:
        ordered after the messages sent to it before, routed to wherever it lives."""
        if not isinstance(ref, ActorRef):
            raise TypeError(f"destroy takes an actor ref (node.ref(...)), not {ref!r:.80}")
        await ref._dna_destroy()

    def _sender(self, ref: ActorRef, index: int) -> Any:
        spec = ref.actor_type._dna_table[index]
        if spec.kind == KIND_CALL:
            return CallSender(self, ref.actor_id, ref.actor_type, index, self.call_timeout)
        return CastSender(self, ref.actor_id, ref.actor_type, index, 0.0)

    # ------------------------------------------------------------ routes

    def resolve(self, aid: ActorId, atype: type[Actor]) -> Inbox:
        """The inbox of ``aid``'s route on this node, activating it (or routing it to a
        peer) when there is none."""
        route = self._routes.get(aid)
        if route is None:
            if self._stopped or not self._started:
                raise InterfaceError("the node is not running")
            if self.draining or not self.host_actors:
                route = self.cluster.route_to_peer(aid, atype)
                self._routes[aid] = route
                return route.inbox
            act = Activation(self, aid, atype)
            self._routes[aid] = act
            act.start()
            return act.inbox
        return route.inbox

    def replace_route(self, aid: ActorId, old: Inbox, route: RemoteRoute) -> None:
        """``route`` takes over from the route whose inbox is ``old``, queue included."""
        current = self._routes.get(aid)
        if current is None or current.inbox is old:
            self._routes[aid] = route
        route.inbox.adopt(old)

    def route_of(self, aid: ActorId) -> Activation | RemoteRoute | None:
        """The route of ``aid`` on this node, if any."""
        return self._routes.get(aid)

    def forget_route(self, aid: ActorId, route: Any) -> None:
        if self._routes.get(aid) is route:
            del self._routes[aid]

    def local_activations(self) -> list[Activation]:
        return [a for a in self._routes.values() if isinstance(a, Activation)]

    def remote_routes(self) -> list[RemoteRoute]:
        return [r for r in self._routes.values() if isinstance(r, RemoteRoute)]

    @property
    def activations(self) -> int:
        """Number of live activations on this node."""
        return sum(1 for a in self._routes.values() if isinstance(a, Activation))

    # ------------------------------------------------------------ the activations' host

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def claim(self, aid: ActorId) -> Claim:
        slots = self._claim_slots
        assert slots is not None
        async with slots:
            self.stats.claims += 1  # dna.metrics
            return await self.store.claim(aid)

    def setup_instance(self, inst: Actor, aid: ActorId) -> None:
        inst.key = aid.key
        inst.namespace = aid.namespace
        inst.node = self
        inst._dna_aid = aid

    def lease_ok(self) -> bool:
        return self.cluster.lease_ok()

    def dispatcher_for(self, atype: type[Actor]) -> Any:
        d = self._dispatchers.get(atype)
        if d is None:
            d = Dispatcher(atype._dna_table, partial(self._call_failed, atype),
                           partial(self._cast_failed, atype))
            self._dispatchers[atype] = d
        return d

    def _call_failed(self, atype: type[Actor], exc: BaseException) -> BaseException:
        """A call's handler raised: count it, log it with its traceback, answer the caller."""
        self.stats.failed(atype)
        level = self.failed_call_log_level
        if log.isEnabledFor(level):
            inst = TURN.instance
            where = inst._dna_aid if inst is not None else atype.type_name
            log.log(level, "call handler of %s failed (its caller gets the error)", where,
                    exc_info=exc)
        return handler_error(exc)

    def _cast_failed(self, atype: type[Actor], msg: Any, exc: BaseException) -> None:
        self.stats.failed(atype)
        inst = TURN.instance
        where = f" of {inst._dna_aid}" if inst is not None else f" of {atype.type_name}"
        log.error("cast handler%s failed (its writes were discarded)", where, exc_info=exc)

    def forget(self, act: Activation) -> None:
        self.forget_route(act.aid, act)

    def takeover(self, old: Activation) -> None:
        """A fresh route takes ``old``'s queued messages and waiting senders, in order."""
        if self._stopped:
            old.fail_queued(InterfaceError("the node stopped"))
            old.inbox.closed = True
            return
        moving = self._moving.pop(old.aid, None)
        try:
            if moving is not None:  # a hand-over: the queue follows the actor to its peer
                route = self.cluster.hand_to(old.aid, old.atype, moving)
                self._routes[old.aid] = route
                inbox = route.inbox
            else:
                inbox = self.resolve(old.aid, old.atype)
        except Exception as exc:
            old.inbox.closed = True
            old.fail_queued(exc)
            return
        inbox.adopt(old.inbox)

    async def hand_over(self, act: Activation, rec: NodeRecord) -> bool:
        """Move ``act`` to the peer ``rec`` as draining does: flush, release, and route its
        queue and every later message there; the peer claims it at once. True if moved."""
        self._moving[act.aid] = rec
        try:
            released = await act.passivate()
        finally:
            self._moving.pop(act.aid, None)
        if released and act.aid not in self._routes and self.running:
            self._routes[act.aid] = self.cluster.hand_to(act.aid, act.atype, rec)
        self.stats.handovers += released  # dna.metrics
        return released

    async def redirect(self, act: Activation, owner: str) -> bool:
        """The claim found a live owner: forward ``act``'s queue there. False if unreachable."""
        return await self.cluster.redirect(act.inbox, act.aid, act.atype, owner)

    # ------------------------------------------------------------ timers

    async def _stop_timers(self) -> None:
        task, self._timer_task = self._timer_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.timers.stop()

    async def _fire_timer(self, aid: ActorId, names: list[str]) -> Any:
        """Send ``aid`` the message firing its timers ``names``, routed like any other
        (the owner runs it, wherever it is); the reply comes after its commit."""
        cls = actor_type(aid.type_name)
        ref = cls._dna_ref_class(self, cls, aid)
        return await getattr(ref, FIRE_HANDLER)(names)

    # ------------------------------------------------------------ housekeeping

    async def _sweep(self) -> None:
        """Passivate activations idle for ``passivate_after`` seconds; cluster upkeep."""
        fence = self.cluster.fence_after or 5.0
        # the scan for idle activations walks every one of them: at its own pace, not
        # the lease's (100k activations, a 5 s lease: 8% of an idle node's CPU)
        scan_every = max(0.01, min(self.passivate_after / 4, 5.0))
        period = min(scan_every, max(0.01, fence / 4))
        next_scan = self.loop.time() + scan_every
        while True:
            await asyncio.sleep(period)
            await self.cluster.tick()
            self.lease_ok()
            now = self.loop.time()
            if now < next_scan - period / 2:  # (a timer may fire a hair early)
                continue
            next_scan = now + scan_every
            after = self.passivate_after
            for act in self.local_activations():
                if act.idle(now, after) and act.state < CLOSING:
                    self.spawn(act.passivate())

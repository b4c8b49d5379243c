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
from .cluster import RemoteRoute, decode_remote
from .errors import InterfaceError, NotOwner, ProtocolError, StoreUnavailable
from .senders import CallSender, CastSender
from .stats import Stats
from .store import ActorId, Store

__all__ = ["Node"]

log = logging.getLogger("dna.node")

A = TypeVar("A", bound=Actor)


def split_listen(listen: str) -> tuple[str, int]:
    """``"host:port"`` (port 0 picks a free one) to ``(host, port)``."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen must be 'host:port', got {listen!r}")
    return host.strip("[]"), int(port)


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

    Cluster: ``listen="host:port"`` serves peers over TCP, authenticated by
    ``secret`` (required off loopback unless ``insecure``; TLS with ``ssl``);
    ``host_actors=False`` makes a client node that routes every name to a peer.
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
        self._acts: dict[ActorId, Any] = {}  # Activation, or RemoteRoute for a peer's actor
        self._dispatchers: dict[type[Actor], Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False
        self._draining = False
        self._host = host_actors  # False: a client node, every name lives on a peer
        # Lease stores (CQL): peers reclaim our names once our heartbeat is `lease` old;
        # we stop serving at `fence_fraction * lease`, well before that.
        lease = getattr(store, "lease", None)
        self._fence_after: float | None = None
        if isinstance(lease, (int, float)):
            if not 0 < fence_fraction < 1:
                raise ValueError("fence_fraction must be between 0 and 1")
            self._fence_after = lease * fence_fraction
            beat = getattr(store, "heartbeat_interval", None)
            if beat is not None and not beat * 2 <= self._fence_after:
                raise InterfaceError(
                    f"heartbeat_interval {beat} s is too long for a lease of {lease} s: "
                    f"a node fences itself after {self._fence_after} s without a heartbeat"
                )
        self._listen = listen  # "host:port" to serve peers on, None for a lone node
        self._insecure = insecure
        self._transport: Any = None
        self._addresses: dict[str, str] = {}  # peer node id -> transport address
        self._peers: list[Any] = []  # last NodeRecords seen, for draining
        self._reported_load = 0  # activation count last published to the nodes table
        if max_claims_in_flight < 1:
            raise ValueError("max_claims_in_flight must be at least 1")
        # Claims are pipelined up to this many; more would queue the store's own
        # heartbeat behind them (a stale heartbeat makes a lease node fence itself).
        self.max_claims_in_flight = max_claims_in_flight
        self._claim_slots: asyncio.Semaphore | None = None
        if not host_actors and listen is None:
            raise InterfaceError("a node that hosts no actors needs listen= to reach its peers")
        if listen is not None:
            from .transport import Transport

            if isinstance(secret, str):
                secret = secret.encode()
            self._transport = Transport(
                self.node_id, secret, on_message=self._on_message,
                on_call=self._on_call, ssl=ssl,
                client_ssl=client_ssl,
                max_frame_size=max_frame_size,
            )

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
        self._claim_slots = asyncio.Semaphore(self.max_claims_in_flight)
        address = ""
        if self._transport is not None:
            host, port = split_listen(self._listen or "")
            await self._transport.start(host, port, insecure=self._insecure)
            address = self._transport.address or ""
        try:
            await self.store.open(self.node_id, address)
        except BaseException:
            if self._transport is not None:
                await self._transport.close()
            raise
        self._started = True
        if self._transport is not None:
            await self._refresh_peers()
        self._sweeper = self._loop.create_task(self._sweep())

    async def stop(self) -> None:
        """Finish in-flight batches, flush writes, release every owned name, close the store."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        acts = [a for a in self._acts.values() if isinstance(a, Activation)]
        if acts:
            await asyncio.gather(*(a.passivate() for a in acts), return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.close()
        if self._transport is not None:
            await self._transport.close()

    async def drain(self) -> None:
        """Leave the cluster gracefully: take no new activations, finish in-flight
        batches, flush and release every owned name so peers take over at once."""
        if not self._started or self._stopped:
            return
        self._draining = True
        mark = getattr(self.store, "set_draining", None)
        if mark is not None:
            await mark(True)
        await self._refresh_peers()
        acts = [a for a in self._acts.values() if isinstance(a, Activation)]
        await asyncio.gather(*(a.passivate() for a in acts), return_exceptions=True)
        await self.stop()

    @property
    def address(self) -> str | None:
        """Where peers reach this node, when it listens."""
        return self._transport.address if self._transport is not None else None

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
        return CastSender(self, ref, index, 0.0)

    # ------------------------------------------------------------ activations

    def _activation(self, aid: ActorId, atype: type[Actor]) -> Any:
        act = self._acts.get(aid)
        if act is None:
            if self._stopped or not self._started:
                raise InterfaceError("the node is not running")
            if self._draining or not self._host:
                return self._route_to_peer(aid, atype)
            act = Activation(self, aid, atype, Mailbox(self.mailbox_size))
            self._acts[aid] = act
            act.start()
        return act

    def lease_ok(self) -> bool:
        """False (and every activation dropped) when our heartbeat is too old to trust
        that we still own anything: peers may reclaim our names soon or already did."""
        if self._fence_after is None:
            return True
        last = getattr(self.store, "last_heartbeat", None)
        if last is not None and self.loop.time() - last <= self._fence_after:
            return True
        self._fence()
        return False

    def _fence(self) -> None:
        acts = [a for a in self._acts.values() if isinstance(a, Activation)]
        if acts:
            log.warning("no heartbeat for %.1f s: dropping %d activations (the lease may "
                        "have passed to peers)", self._fence_after or 0, len(acts))
        err = StoreUnavailable(f"node {self.node_id} lost its lease: retry")
        for act in acts:
            act.fence(err)

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
        if act is None and self._draining:  # leaving: the queue goes to a peer, in order
            try:
                route = self._route_to_peer(old.aid, old.atype)
            except NotOwner as exc:
                old.fail_queued(exc)
                return
            old.hand_over(route)
            return
        if act is None:
            act = Activation(self, old.aid, old.atype, old.mailbox)
            act.room_waiters = old.room_waiters
            self._acts[old.aid] = act
            act.start()
            return
        for msg in old.mailbox.clear():  # someone re-created it meanwhile: queue behind
            if not act.mailbox.push(msg):
                act.waiters().append((None, msg))
        if old.room_waiters:
            act.waiters().extend(old.room_waiters)
        if act.state == IDLE and len(act.mailbox):
            act.schedule()

    # ------------------------------------------------------------ cluster

    def _deliver(self, aid: ActorId, atype: type[Actor], msg: tuple[Any, ...]) -> None:
        """Route a message that arrived from a peer (or is re-routed) like a local send."""
        self._deliver_all(self._activation(aid, atype), (msg,))

    def _deliver_all(self, route: Any, msgs: Any) -> None:
        if isinstance(route, RemoteRoute):  # passing through: the socket buffers
            for msg in msgs:
                route.forward(msg)
            return
        mailbox = route.mailbox
        for msg in msgs:
            if route.room_waiters or not mailbox.push(msg):
                # full: queue behind the waiters, in arrival order (no sender waits here)
                route.waiters().append((None, msg))
        if route.state == IDLE and len(mailbox):
            route.schedule()

    def _leaving(self) -> NotOwner:
        return NotOwner(f"node {self.node_id} is leaving the cluster: route again", None)

    def _on_call(self, peer: str, wire: Any, reply: Any) -> None:
        """A peer's call; the activation settles ``reply``, which answers the peer."""
        if self._stopped:
            raise self._leaving()
        aid, atype, msgs = decode_remote(wire)
        if len(msgs) != 1:
            raise ProtocolError("a call frame carries exactly one message")
        msg = msgs[0]
        self._deliver(aid, atype, (*msg[:3], reply, msg[4]))

    def _on_message(self, peer: str, wire: Any) -> None:
        try:
            aid, atype, msgs = decode_remote(wire)
        except Exception as exc:
            log.warning("casts from %s refused: %r", peer, exc)
            return
        try:
            if self._stopped:
                raise self._leaving()
            route = self._activation(aid, atype)
        except Exception as exc:
            log.warning("casts from %s refused: %r", peer, exc)
            return
        self._deliver_all(route, msgs)

    async def _report_load(self) -> None:
        """Publish this node's activation count (``dna status``) when it changed."""
        n = self.activations
        beat = getattr(self.store, "heartbeat", None)
        if beat is not None and n != self._reported_load:
            await beat(n)
            self._reported_load = n

    async def _address_of(self, node_id: str) -> str | None:
        addr = self._addresses.get(node_id)
        if addr is None:
            await self._refresh_peers()
            addr = self._addresses.get(node_id)
        return addr

    async def _refresh_peers(self) -> None:
        try:
            self._peers = await self.store.nodes()
        except NotImplementedError:
            self._peers = []
        for rec in self._peers:
            if rec.address:
                self._addresses[rec.node_id] = rec.address

    async def _redirect(self, act: Activation, owner: str) -> bool:
        """The claim found a live owner: forward ``act``'s queue there. False if unreachable."""
        if self._transport is None:
            return False
        address = await self._address_of(owner)
        if not address or address == self._transport.address:
            return False
        route = RemoteRoute(self, act.aid, act.atype, owner, address)
        if self._acts.get(act.aid) is act:
            self._acts[act.aid] = route
        act.hand_over(route)
        return True

    def _route_to_peer(self, aid: ActorId, atype: type[Actor]) -> Any:
        """While draining: new names go to a live peer, which claims them."""
        for rec in self._peers:
            if rec.node_id != self.node_id and not rec.draining and rec.alive is not False:
                if rec.address:
                    route = RemoteRoute(self, aid, atype, rec.node_id, rec.address)
                    self._acts[aid] = route
                    return route
        why = "is draining" if self._draining else "hosts no actors"
        raise NotOwner(f"{aid}: this node {why} and no live peer is known", None)

    def _drop_route(self, route: Any) -> None:
        aid = route.aid
        if self._acts.get(aid) is route:
            del self._acts[aid]
            if not self._stopped:  # the peer may be gone: learn who is alive now
                self._spawn(self._refresh_peers())

    @property
    def activations(self) -> int:
        """Number of live activations on this node."""
        return sum(1 for a in self._acts.values() if isinstance(a, Activation))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _sweep(self) -> None:
        """Passivate activations idle for ``passivate_after`` seconds."""
        period = max(0.01, min(self.passivate_after / 4, 5.0, (self._fence_after or 5.0) / 4))
        while True:
            await asyncio.sleep(period)
            if self._transport is not None:
                try:
                    await self._refresh_peers()
                    await self._report_load()
                except Exception as exc:
                    log.warning("cannot list peers: %r", exc)
            self.lease_ok()
            now = self.loop.time()
            after = self.passivate_after
            acts = [a for a in self._acts.values() if isinstance(a, Activation)]
            for act in [a for a in acts if a.idle(now, after)]:
                if act.state < CLOSING:
                    self._spawn(act.passivate())

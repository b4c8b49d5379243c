"""The cluster side of a node: peers, liveness, self-fencing, redirects, remote routes,
and the handlers that answer peers.

A node that listens owns one ``Cluster``. A name owned by a live peer gets a
``RemoteRoute`` in the node's routing table in place of a local activation;
senders put messages into its inbox exactly as into a local one, and it
forwards them over the transport in send order (one connection per peer).
The receiver routes what arrives like a local send, so it re-checks
ownership: it activates the actor, or forwards once more to the owner it
finds, up to ``MAX_HOPS``. A call lost with its peer fails with
``PeerUnavailable`` (it may have run; never a false success) and closes the
route, so every sender, kept refs included, routes afresh on its next message.

Liveness: on a lease store (CQL) the node judges its own lease by the time of
the last heartbeat known to have succeeded (issued) before now; once that is
``fence_after`` old, or a gap that long is seen between two heartbeats (the
process was paused), every activation is dropped before anything else runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from . import _trace
from ._core import Credit, Inbox, cast_entries, decode_entries
from ._placement import candidates, place
from ._placement import score as rendezvous
from .actor import actor_type
from .errors import (
    CallCycle,
    InterfaceError,
    NotOwner,
    PeerUnavailable,
    ProtocolError,
    StoreUnavailable,
    Timeout,
    UnknownHandler,
)
from .ids import ActorId
from .senders import CallFuture

if TYPE_CHECKING:
    from .actor import Actor
    from .stats import Stats
    from .store import NodeRecord, Store

__all__ = [
    "MAX_HOPS", "Cluster", "Members", "PeerCall", "RemoteRoute", "decode_remote", "rendezvous",
    "split_listen",
]

log = logging.getLogger("dna.cluster")

MAX_HOPS = 3  # forwards a message may take before the sender is told NotOwner
MAX_FRAME_CASTS = 4096  # casts a route buffers before senders wait for a flush


def split_listen(listen: str) -> tuple[str, int]:
    """``"host:port"`` (port 0 picks a free one) to ``(host, port)``."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen must be 'host:port', got {listen!r}")
    return host.strip("[]"), int(port)


class Members(Protocol):
    """What the cluster needs of its node (``dna.Node`` is one)."""

    node_id: str
    draining: bool
    stats: Stats

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def new_future(self) -> Callable[[], asyncio.Future[Any]]: ...
    @property
    def store(self) -> Store: ...
    @property
    def running(self) -> bool: ...
    @property
    def activations(self) -> int: ...
    def local_activations(self) -> list[Any]: ...
    def remote_routes(self) -> list[RemoteRoute]: ...
    def resolve(self, aid: ActorId, atype: type[Actor]) -> Inbox: ...
    def replace_route(self, aid: ActorId, old: Inbox, route: RemoteRoute) -> None: ...
    def forget_route(self, aid: ActorId, route: Any) -> None: ...
    def route_of(self, aid: ActorId) -> Any: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...


def _chain_wire(chain: tuple[ActorId, ...]) -> list[list[str]]:
    return [[a.namespace, a.type_name, a.key] for a in chain]


class PeerCall:
    """A call that arrived from a peer, as the activation sees its reply: it settles
    the transport's reply and carries the caller's deadline, chain and hop count."""

    __slots__ = ("chain", "deadline", "hops", "reply", "trace")

    def __init__(self, reply: Any, chain: tuple[ActorId, ...], hops: int) -> None:
        self.reply = reply  # the transport's answer to the peer
        self.trace: str | None = None  # W3C traceparent calls made for it carry (_trace)
        self.deadline: float = reply.deadline  # the caller's, in our loop's time
        self.chain = chain  # actors whose handlers wait on this call, outermost first
        self.hops = hops  # forwards so far

    def done(self) -> bool:
        return bool(self.reply.done())

    def set_result(self, value: Any) -> None:
        self.reply.set_result(value)

    def set_exception(self, exc: BaseException) -> None:
        self.reply.set_exception(exc)


class RemoteRoute:
    """Where messages for an actor owned by a peer go: an inbox drained to the socket."""

    __slots__ = ("address", "aid", "atype", "cluster", "inbox", "names", "owner", "waiting_room")

    def __init__(
        self, cluster: Cluster, aid: ActorId, atype: type[Actor], owner: str, address: str
    ) -> None:
        self.cluster = cluster
        self.aid = aid
        self.atype = atype
        self.owner = owner  # peer node id
        self.address = address  # peer's transport address
        self.inbox = Inbox(MAX_FRAME_CASTS, cluster.node.new_future)
        self.inbox.wake = self._wake
        self.inbox.arm()
        self.waiting_room = False  # a task waits for the socket to drain
        self.names = [spec.name for spec in atype._dna_table]  # handler names by index

    def _wake(self) -> None:
        # The first message into an idle route goes at once, on the wire in this turn
        # of the loop (a lone call waits for no turn); the route re-arms on the next
        # turn, so what else arrives in this one goes in one frame then.
        if self._send():
            self.cluster.transport.flush_now(self.address)
            self.cluster.loop.call_soon(self._rearm)

    def _rearm(self) -> None:
        if not self.inbox.closed:
            self.inbox.arm()  # at once back in _wake if messages came meanwhile

    def flush(self) -> None:
        """Send what the inbox holds, in order, while the connection takes it."""
        if self._send():
            self.inbox.arm()

    def _send(self) -> bool:
        """Frames of what the inbox holds, queued on the connection; False when nothing
        can go (closed, or congested: a task waits for room and flushes again)."""
        inbox = self.inbox
        if inbox.closed:
            return False
        transport = self.cluster.transport
        if transport.congested(self.address, self):  # our own frames wait for credit
            if not self.waiting_room:
                self.waiting_room = True
                self.cluster.node.spawn(self._when_writable())
            return False
        # no bigger a frame than the peer's credit: one beyond it would wait in the
        # peer's inbox behind a full mailbox (at least one, held here until credit comes)
        msgs = inbox.take(max(1, min(MAX_FRAME_CASTS, transport.credit(self.address))))
        i, n = 0, len(msgs)
        while i < n:  # casts before a call stay ahead of it; one frame per run of casts
            if msgs[i][3] is not None:
                self._send_call(msgs[i])
                i += 1
                continue
            entries, hops, i = cast_entries(msgs, i, self.names)
            self._send_casts(entries, hops)
        return True

    async def _when_writable(self) -> None:
        try:
            await self.cluster.transport.writable(self.address, self)
        finally:
            self.waiting_room = False
        self.flush()

    def _entry(self, msg: tuple[Any, ...]) -> list[Any]:
        return [self.names[msg[0]], msg[1], msg[2]]

    def _send_casts(self, entries: list[Any], hops: int) -> None:
        aid = self.aid
        if hops >= MAX_HOPS:
            log.warning("%d casts to %s dropped: ownership kept moving (%d forwards)",
                        len(entries), aid, hops)
            return
        self.cluster.node.stats.forwards += len(entries)  # dna.metrics
        try:
            self.cluster.transport.send(
                self.address, [aid.type_name, aid.namespace, aid.key, entries, hops + 1, []],
                weight=len(entries), key=self,
            )
        except InterfaceError as exc:  # the node is stopping: casts are never acknowledged
            log.warning("%d casts to %s dropped: %s", len(entries), aid, exc)

    def _send_call(self, msg: tuple[Any, ...]) -> None:
        reply = msg[3]
        if reply.done():
            return
        hops = reply.hops
        if hops >= MAX_HOPS:
            reply.set_exception(
                NotOwner(f"{self.aid}: ownership kept moving ({hops} forwards)", self.owner)
            )
            return
        left = reply.deadline - self.cluster.loop.time()
        if left <= 0:
            reply.set_exception(Timeout(f"{self.aid}: the deadline passed before forwarding"))
            return
        aid = self.aid
        self.cluster.node.stats.forwards += 1  # dna.metrics
        wire = [aid.type_name, aid.namespace, aid.key, [self._entry(msg)], hops + 1,
                _chain_wire(reply.chain)]
        if _trace.ON and getattr(reply, "trace", None):  # the caller's span context
            wire.append(reply.trace)
        local = type(reply) is CallFuture  # its caller's timer is the call's only one
        try:
            expire = self.cluster.transport.request_to(
                self.address, wire, left, _Pending(self, msg), arm=not local, key=self
            )
        except Exception as exc:
            reply.set_exception(exc)
            return
        if local:
            reply.pending = expire

    def close(self, refresh: bool = True) -> None:
        """This route is dead: senders resolve again; queued messages route afresh
        (``refresh``: and the peer list is read again soon)."""
        inbox = self.inbox
        if inbox.closed:
            return
        inbox.closed = True
        self.cluster.drop_route(self, refresh)


class _Pending:
    """A call forwarded to a peer, settled by the transport straight from the answer."""

    __slots__ = ("finished", "msg", "route", "timer")

    def __init__(self, route: RemoteRoute, msg: tuple[Any, ...]) -> None:
        self.route = route  # where it went
        self.msg = msg  # the caller's message; msg[3] is the caller's reply
        self.timer: Any = None  # the transport's deadline timer
        self.finished = False

    def done(self) -> bool:
        # only the forwarded call's own state: a caller that gave up early must not
        # stop the transport's deadline from dropping a route to a paused peer
        return self.finished

    def _finish(self) -> Any:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
        return self.msg[3]

    def set_result(self, value: Any) -> None:
        reply = self._finish()
        if not reply.done():
            reply.set_result(value)

    def set_exception(self, exc: BaseException) -> None:
        reply = self._finish()
        route = self.route
        if isinstance(exc, NotOwner) and not reply.done():
            # the peer refused before running it: safe to route again, one hop further
            route.close()
            reply.hops += 1
            route.cluster.reroute(route.aid, route.atype, self.msg)
            return
        if isinstance(exc, (PeerUnavailable, Timeout)):
            # the peer is gone or paused: route afresh next time (it may have lost the name)
            route.close()
        if not reply.done():
            reply.set_exception(exc)


def decode_remote(
    wire: Any,
) -> tuple[ActorId, type[Actor], list[tuple[Any, ...]], int, tuple[ActorId, ...]]:
    """Validate a frame of actor messages from a peer: ``(aid, class, messages, hops, chain)``.

    A frame is ``[type_name, namespace, key, [[handler, args, kwargs], ...], hops,
    [[namespace, type_name, key], ...]]``, and a traced call's a W3C traceparent
    after that; the messages come back as mailbox tuples without a reply (casts
    carry the hop count as item 4).
    """
    if type(wire) is not list or not 6 <= len(wire) <= 7:
        raise ProtocolError("malformed actor message")
    tname, ns, key, entries, hops, chain_w = wire[:6]
    if len(wire) == 7 and (type(wire[6]) is not str or len(wire[6]) > 256):
        raise ProtocolError("malformed actor message: bad traceparent")
    if type(tname) is not str or type(ns) is not str or type(key) is not str:
        raise ProtocolError("malformed actor message: names must be str")
    if type(entries) is not list or type(hops) is not int or hops < 0:
        raise ProtocolError("malformed actor message: bad entries or hop count")
    if type(chain_w) is not list or len(chain_w) > 64:
        raise ProtocolError("malformed actor message: bad call chain")
    chain = []
    for link in chain_w:
        if type(link) is not list or len(link) != 3 or any(type(x) is not str for x in link):
            raise ProtocolError("malformed actor message: bad call chain")
        chain.append(ActorId(*link))
    atype = actor_type(tname)
    try:
        out = decode_entries(entries, atype._dna_handlers, hops)
    except LookupError as exc:
        raise UnknownHandler(f"{tname} has no handler {exc.args[0]!r}") from None
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    return ActorId(ns, tname, key), atype, out, hops, tuple(chain)


class Cluster:
    """Everything a node does with its peers (see the module docstring)."""

    def __init__(
        self,
        node: Members,
        *,
        listen: str | None,
        secret: bytes | None,
        ssl: Any,
        client_ssl: Any,
        insecure: bool,
        max_frame_size: int,
        fence_after: float | None,
        window: int = 10_000,
    ) -> None:
        self.node = node
        self.listen = listen  # "host:port" to serve peers on, None for a lone node
        self.insecure = insecure
        self.fence_after = fence_after  # seconds without a heartbeat before we fence
        self.transport: Any = None
        self.addresses: dict[str, str] = {}  # peer node id -> transport address
        self.peers: list[NodeRecord] = []  # last node rows seen
        self.dead: set[str] = set()  # peers judged dead in that list (their routes dropped)
        self.reported_load = 0  # activation count last published to the nodes table
        self.term = 0  # the store's lease term our activations were made under
        self.joined_once = False  # the node has started (it may have stopped since)
        self.advertise: str | None = None  # address told to peers, if not the bound one
        self.ready: list[Any] = []  # activations a peer's call just woke (run_ready)
        self.refreshing: asyncio.Task[None] | None = None  # refresh_soon's read under way
        self._refresh_again = False  # a route dropped during that read: one more after it
        if listen is not None:
            from .transport import Transport

            # Flow control: a peer may have `window` messages here that no mailbox has
            # taken yet (queued behind full ones); they are given back as mailboxes take
            # them, so what a node holds for its peers is bounded (DESIGN.md, wire).
            self.transport = Transport(
                node.node_id, secret, on_message=self.on_message, on_call=self.on_call,
                ssl=ssl, client_ssl=client_ssl, max_frame_size=max_frame_size,
                manual_release=True, window=max(64, window), split=split_casts,
                on_received=self.run_ready,
            )

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.node.loop

    @property
    def address(self) -> str:
        return (self.transport.address or "") if self.transport is not None else ""

    async def start(self) -> None:
        """Listen (before the store registers our address)."""
        if self.transport is not None:
            host, port = split_listen(self.listen or "")
            await self.transport.start(host, port, insecure=self.insecure,
                                       advertise=self.advertise)

    async def joined(self) -> None:
        """The store knows us: learn the peers."""
        self.joined_once = True
        if self.transport is not None:
            await self.refresh_peers()

    async def close(self) -> None:
        if self.transport is not None:
            await self.transport.close()

    # ------------------------------------------------------------ liveness

    def lease_ok(self) -> bool:
        """False (and every activation dropped) once our lease cannot be trusted: the
        last heartbeat known to have succeeded was sent ``fence_after`` ago, or the
        lease lapsed and was taken up again (the process was paused: peers may own
        our names meanwhile). Checked before every batch, reads included."""
        fence_after = self.fence_after
        if fence_after is None:
            return True
        store = self.node.store
        term = store.lease_term
        last = store.last_heartbeat
        if term == self.term and last is not None and self.loop.time() - last <= fence_after:
            return True
        self.term = term
        self.fence()
        return False

    def fence(self) -> None:
        acts = self.node.local_activations()
        if acts:
            log.warning("no heartbeat for %.1f s: dropping %d activations (the lease may "
                        "have passed to peers)", self.fence_after or 0, len(acts))
        err = StoreUnavailable(f"node {self.node.node_id} lost its lease: retry")
        for act in acts:
            act.fence(err)

    # ------------------------------------------------------------ peers

    async def refresh_peers(self) -> None:
        self.peers = peers = await self.node.store.nodes()
        for rec in peers:
            if rec.address:
                self.addresses[rec.node_id] = rec.address
        dead = {rec.node_id for rec in peers if rec.alive is False}
        newly = dead - self.dead
        self.dead = dead
        if newly:
            self.drop_routes_to(newly)

    def drop_routes_to(self, node_ids: set[str]) -> None:
        """Close every route to these nodes, now judged dead: the next message of each
        actor goes where placement now says (a peer that claims it) instead of failing
        once against the dead node first. Messages a route still queues route afresh;
        calls already sent fail with the connection (PeerUnavailable), as ever. Without
        it, a failover of 100k actors cost one failed try per actor, each waiting for a
        refused connection (bench/failover.py: about 5k answers/s after the lease)."""
        for route in self.node.remote_routes():
            if route.owner in node_ids:
                route.close(refresh=False)  # one read of the node list is enough: ours

    async def report_load(self) -> None:
        """Publish this node's activation count (``dna status``) when it changed."""
        n = self.node.activations
        if n != self.reported_load:
            await self.node.store.heartbeat(n)
            self.reported_load = n

    async def tick(self) -> None:
        """Periodic work of the node's sweeper."""
        if self.transport is not None:
            try:
                await self.refresh_peers()
                await self.report_load()
            except Exception as exc:
                log.warning("cannot list peers: %r", exc)

    async def address_of(self, node_id: str) -> str | None:
        addr = self.addresses.get(node_id)
        if addr is None:
            await self.refresh_peers()
            addr = self.addresses.get(node_id)
        return addr

    def _alive(self, node_id: str) -> bool:
        for rec in self.peers:
            if rec.node_id == node_id:
                return rec.alive is not False and not rec.draining
        return True  # not listed yet: a node that just joined

    async def redirect(self, inbox: Inbox, aid: ActorId, atype: type[Actor], owner: str) -> bool:
        """The claim found a live owner: forward ``inbox``'s queue there. False if unreachable."""
        if self.transport is None:
            return False
        if not self._alive(owner):
            # The store found ``owner`` holding the name and live just now, where our
            # last listing judged it dead or draining: that listing can be older (read
            # before this process was paused, judged after it woke). One more read,
            # shared by every redirect waiting meanwhile, before the caller is refused.
            await self.refreshed()
            if not self._alive(owner):
                return False
        address = await self.address_of(owner)
        if not address or address == self.transport.address:
            return False
        route = RemoteRoute(self, aid, atype, owner, address)
        self.node.replace_route(aid, inbox, route)
        return True

    def route_to_peer(self, aid: ActorId, atype: type[Actor]) -> RemoteRoute:
        """While draining, or on a client node: a new name goes to the live, hosting peer
        that weighted rendezvous hashing picks for it (the same peer from every node,
        and only the names of a node that leaves move), which claims it."""
        hosts = {r.node_id: r for r in candidates(self.peers, exclude=self.node.node_id)}
        best = place(aid, hosts)
        if best is not None and self.transport is not None:
            return RemoteRoute(self, aid, atype, best, hosts[best].address)
        why = "is draining" if self.node.draining else "hosts no actors"
        raise NotOwner(f"{aid}: this node {why} and no live peer is known", None)

    def hand_to(self, aid: ActorId, atype: type[Actor], rec: NodeRecord) -> RemoteRoute:
        """A route to ``rec`` for an actor this node just released to it (rebalancing):
        the peer is asked to activate it at once, ahead of anything the route sends."""
        route = RemoteRoute(self, aid, atype, rec.node_id, rec.address)
        try:  # an empty frame of casts: the receiver resolves (claims) the name only
            self.transport.send(rec.address, [aid.type_name, aid.namespace, aid.key, [], 1, []],
                                weight=1)
        except InterfaceError as exc:  # stopping: the next message activates it anyway
            log.debug("activation of %s on %s not asked: %r", aid, rec.node_id, exc)
        return route

    def drop_route(self, route: RemoteRoute, refresh: bool = True) -> None:
        """A closed route leaves the table; what it still queues routes afresh."""
        node = self.node
        node.forget_route(route.aid, route)
        if not node.running:
            route.inbox.fail(PeerUnavailable(f"{route.aid}: the node is stopping"))
            return
        if len(route.inbox):
            try:
                node.resolve(route.aid, route.atype).adopt(route.inbox)
            except Exception as exc:
                route.inbox.fail(exc)
        if refresh:
            self.refresh_soon()

    def refresh_soon(self) -> None:
        """Re-read the peer list, coalesced: one read at a time, and one more after it
        when asked again meanwhile (so every ask is followed by a read that started
        after it). A failover drops every route to the dead node at once: one read
        each made the client spend 60% of its loop re-reading the node list."""
        if self.refreshing is not None:
            self._refresh_again = True
            return
        self.refreshing = self.node.spawn(self._refresh_quietly())

    async def refreshed(self) -> None:
        """Wait for a read of the peer list that started after this call (refresh_soon's,
        so a burst of callers shares one or two reads)."""
        self.refresh_soon()
        if self.refreshing is not None:  # (a stop that cancels it does not raise here)
            await asyncio.wait((self.refreshing,))

    async def _refresh_quietly(self) -> None:
        try:
            while True:
                self._refresh_again = False
                try:
                    await self.refresh_peers()
                except Exception as exc:
                    log.debug("cannot list peers: %r", exc)
                if not self._refresh_again:
                    return
        finally:
            self.refreshing = None

    def reroute(self, aid: ActorId, atype: type[Actor], msg: tuple[Any, ...]) -> None:
        """Deliver ``msg`` again after a peer refused it; its caller hears any failure."""
        try:
            self.node.resolve(aid, atype).push(msg)
        except Exception as exc:
            reply = msg[3]
            if reply is not None and not reply.done():
                reply.set_exception(exc)

    # ------------------------------------------------------------ peer-facing

    def _leaving_error(self) -> NotOwner:
        """Retryable: a node still starting or already stopping serves nothing yet/any more."""
        doing = "is leaving the cluster" if self.joined_once else "is still starting"
        return NotOwner(f"node {self.node.node_id} {doing}: route again", None)

    def on_call(self, peer: str, wire: Any, reply: Any) -> None:
        """A peer's call; the activation settles ``reply``, which answers the peer."""
        source = self.transport.source
        try:
            if not self.node.running:
                raise self._leaving_error()
            aid, atype, msgs, hops, chain = decode_remote(wire)
            if len(msgs) != 1:
                raise ProtocolError("a call frame carries exactly one message")
            if aid in chain:
                raise CallCycle(_cycle_text(chain, aid))
            inbox = self.node.resolve(aid, atype)
        except BaseException:
            source.release(1)
            raise
        call = PeerCall(reply, chain, hops)
        if len(wire) == 7 and _trace.ON:  # a traced caller: a SERVER span, child of its span
            _trace.serve(call, wire[6], aid, atype._dna_table[msgs[0][0]].name, self.node.node_id)
        msg = (*msgs[0][:3], call)
        if inbox.offer(msg):
            source.release(1)
            consumer = self.node.route_of(aid)
            if consumer is not None and type(consumer) is not RemoteRoute:
                self.ready.append(consumer)
        else:
            inbox.push(msg, Credit(source))

    def run_ready(self) -> None:
        """After a chunk from a peer: run the activations its calls woke now rather than
        on the next turn of the loop, so that their replies go out in this one (as an
        echo server's would). Each was scheduled as usual; ``run`` does nothing for
        one that no longer waits, so the scheduled run finds nothing to do."""
        ready = self.ready
        if not ready:
            return
        self.ready = []
        for act in ready:
            try:
                act.run()
            except Exception as exc:  # as the loop would report a failed callback
                self.loop.call_exception_handler(
                    {"message": f"running {act.aid} failed", "exception": exc})

    def on_message(self, peer: str, wire: Any) -> None:
        source = self.transport.source
        try:
            aid, atype, msgs, _hops, _chain = decode_remote(wire)
        except Exception as exc:
            log.warning("casts from %r refused: %r", peer, exc)
            source.release(_weight(wire))
            return
        try:
            if not self.node.running:
                raise self._leaving_error()
            if not msgs:  # a hand-over's "claim it now" (hand_to), counted as one
                route = self.node.route_of(aid)
                if isinstance(route, RemoteRoute):  # likely stale: the claim decides
                    route.close()
            inbox = self.node.resolve(aid, atype)
        except Exception as exc:
            log.warning("%d casts from %r refused: %r", len(msgs), peer, exc)
            source.release(max(1, len(msgs)))
            return
        if not msgs:
            source.release(1)
            return
        # credit comes back as the consumer takes them (Inbox.push_all): the peer is
        # paced by the actor's progress, and its casts fit the mailbox (window <= size)
        inbox.push_all(msgs, source)


def split_casts(wire: Any, weight: int) -> list[tuple[Any, int]] | None:
    """A frame of casts cut in two halves, in order (the transport's ``split``)."""
    if type(wire) is not list or len(wire) != 6 or type(wire[3]) is not list:
        return None
    entries = wire[3]
    if len(entries) < 2 or len(entries) != weight:
        return None
    half = len(entries) // 2
    head, tail = wire[:3], wire[4:]
    return [([*head, entries[:half], *tail], half),
            ([*head, entries[half:], *tail], len(entries) - half)]


def _weight(wire: Any) -> int:
    """How many items a peer counted for a frame we cannot decode."""
    if type(wire) is list and len(wire) == 6 and type(wire[3]) is list:
        return max(1, len(wire[3]))
    return 1


def _cycle_text(chain: tuple[ActorId, ...], target: ActorId) -> str:
    path = " -> ".join(str(a) for a in (*chain, target))
    return f"call cycle: {path} (an actor handles one message at a time)"

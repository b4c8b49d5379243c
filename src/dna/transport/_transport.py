"""Inter-node TCP: one authenticated connection per peer, coalesced msgpack frames.

``Transport(node_id, secret, on_request=..., on_message=...)`` listens with
``await start(host, port)`` and talks to peers by address (``"host:port"``)
with ``await request(address, msg, timeout)`` and ``send(address, msg)``.
What callers may rely on:

- **One connection per peer**, opened on first use and shared by every call
  to that address (concurrent first calls share one connect). An incoming
  connection from a peer that listens is reused for our own calls to it.
- **Order.** Frames to one peer arrive in the order ``send``/``request``
  queued them (among frames of one ``key`` when calls are sent with keys, see
  flow control), and the peer starts its handlers in arrival order.
- **Calls** carry their deadline (as seconds left, never a wall clock); the
  receiver drops a call whose deadline passed before it started and drops a
  reply that is ready too late. Expiry raises ``Timeout`` at the caller. A
  connection lost with calls in flight fails them with ``PeerUnavailable``
  (retryable: the call may or may not have run).
- **Dead links are noticed** while calls are in flight: a connection that
  shows no sign of life (no frame from the peer, no progress writing to it)
  for ``ping_interval`` seconds (default 1) is pinged, and after
  ``dead_after`` seconds (default 2.5) it is closed and its calls fail with
  ``PeerUnavailable``, so a blackholed link costs ~3 s, not the call's
  timeout. A peer whose loop is blocked that long counts as dead too.
- **Errors.** A handler's ``ActorError`` keeps its remote type and message;
  a ``dna.errors`` class is raised again by name with its message; anything
  else becomes ``ActorError(type_name, message)``. Nothing is ever unpickled
  or imported by name.
- **Authentication** comes before any frame is decoded: a mutual challenge
  with keys derived (HKDF-SHA256) from the cluster ``secret``, bound to the
  direction, both nonces and both node ids; a HELLO carrying our own node id
  or nonce (a reflected handshake) is refused. After it, every record of
  frames carries a MAC keyed per connection and direction, with an implicit
  sequence number: injected, replayed or reordered bytes close the
  connection before anything in them is decoded (``transport_auth``). A peer
  with the wrong secret, garbage, an oversize frame or a stalled handshake
  gets its connection closed with a warning on the ``dna.transport`` logger;
  every other connection is unaffected. Idle connections are kept alive with
  ping/pong and closed after ``idle_timeout`` seconds without any traffic.
- **TLS** is mutual or refused: ``ssl`` is the listener's context
  (``PROTOCOL_TLS_SERVER`` with ``verify_mode == CERT_REQUIRED``, so every
  peer shows a certificate the CA signed); ``client_ssl`` dials peers
  (``PROTOCOL_TLS_CLIENT``, ``CERT_REQUIRED``, with our client certificate)
  and defaults to ``ssl``, which then has to be valid for both sides. A
  context that does not verify its peer raises ``InterfaceError`` at
  construction. ``tls_contexts(cert, key, ca)`` builds the pair from PEM
  files. The peer's host name from its address is the TLS server name. The
  secret handshake and record MACs run inside TLS as well.
- **Flow control.** A peer may have at most ``window`` one-way items (default
  8192; ``send(..., weight=n)`` is n) and ``window`` calls delivered to our
  handlers and not yet released, plus one frame; beyond that its messages and
  calls wait at the sender, in order, and ``congested()`` is true there.
  Calls have credit of their own, and a call sent with a ``key`` (a route)
  goes ahead of waiting frames of other keys: a backlog of casts to a slow
  actor does not delay calls to others. Order holds per key.
  Replies are never counted, so an answer is never held behind requests.
  By default an item is released as soon as its handler returns; with
  ``manual_release=True`` the handler takes ``transport.source`` (valid
  while ``on_message``/``on_call`` runs synchronously) and calls
  ``source.release(n)`` once the items left its buffers (say, a mailbox).
  With manual release, a peer that sends beyond its credit is cut off.
- **Big batches** of one-way messages (``send(..., weight=n)``) whose frame
  would pass ``max_frame_size`` are cut in order into frames that fit, by the
  ``split(msg, weight)`` given (two ``(msg, weight)`` halves, or None when it
  cannot be cut). A single frame still over the limit is refused locally: a
  call fails with ``InterfaceError``, a one-way message is logged as dropped.
- **Calls start only while their replies fit**: the bytes unsent to a peer
  plus a reply-size estimate per call of it still running stay within
  ``max_unsent``; its other calls (and its one-way messages behind them, so
  order holds) wait unstarted until it reads (``_calls``). ``peak_unsent``
  is the most bytes ever seen waiting unsent to one peer.
- **A peer that does not read** is cut off: once more than ``max_unsent``
  bytes (default 64 MiB) wait unsent to one peer, its connection is closed
  with a warning and its calls fail with ``PeerUnavailable``. Senders that
  want no such failure wait for ``writable()`` while ``congested()``.
- **Limits on strangers.** At most ``max_handshaking`` (default 256)
  accepted connections may be unauthenticated (in TLS or in our handshake)
  at once; a new one beyond that closes the oldest of the address holding
  the most. At most
  ``max_handshaking_per_host`` (default 32) of them may come from one IP
  address; more are closed at once, before any TLS work. Each has
  ``handshake_timeout`` seconds (TLS and our handshake each) to
  authenticate. Running out of file descriptors pauses accepting for
  0.25 s. What unauthenticated peers make us log is throttled (5 warnings
  per 10 s, the rest counted), so no peer can grow the log per connection.
- Without a secret, ``start`` refuses a non-loopback address unless
  ``insecure=True``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl as _ssl
from collections.abc import Callable
from functools import partial
from typing import Any

from ..errors import InterfaceError, PeerUnavailable, Timeout
from ._auth import check_tls, encode_field, master_key, tls_contexts
from ._calls import Answer, CallCredit, on_request_adapter
from ._conn import READY, Connection
from ._limits import Admission, Throttled
from ._wire import (
    INITIAL_CREDIT,
    MESSAGE,
    PING,
    REQUEST,
    format_address,
    is_loopback_literal,
    parse_address,
)

__all__ = ["Transport", "tls_contexts"]

log = logging.getLogger("dna.transport")

OnRequest = Callable[[str, Any], Any]  # (peer node id, msg) -> reply or awaitable of it
OnMessage = Callable[[str, Any], None]  # (peer node id, msg)
OnCall = Callable[[str, Any, Any], None]  # (peer node id, msg, Reply): answers via the Reply

_CLOSE_GRACE = 2.0  # seconds close() waits for sockets to finish closing
_ACCEPT_RETRY = 0.25  # seconds accepting pauses when the process is out of file descriptors
_MAX_FRAME_LIMIT = 0xFFFFFFFF - 4  # a record (frame + its header) must fit a 4-byte length
# listen() backlog: the kernel caps it (net.core.somaxconn). A flood of connections
# that a busy loop accepts late overflowed 128, and the kernel then dropped a peer's
# SYN: its connect waited for a retransmission (1 s, then 3 s).
_BACKLOG = socket.SOMAXCONN
_ACCEPTS = 128  # the most connections accepted per loop iteration
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def _expire(fut: asyncio.Future[Any], address: str, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(Timeout(f"no reply from {address} within {timeout} s"))


def _expire_call(conn: Connection, rid: int, address: str, timeout: float) -> None:
    target = conn.pending.pop(rid, None)
    if target is not None and not target.done():
        target.set_exception(Timeout(f"no reply from {address} within {timeout} s"))


def _check_settings(
    node_id: str, secret: bytes | None, max_frame_size: int, handshake_timeout: float,
    idle_timeout: float, ping_interval: float, dead_after: float, max_unsent: int,
    window: int, max_handshaking: int, max_handshaking_per_host: int,
) -> None:
    """ValueError/InterfaceError for a Transport setting out of range."""
    encode_field(node_id, "node id")  # raises ValueError when too long
    if not node_id:
        raise ValueError("node_id must not be empty")
    if secret is not None and (not isinstance(secret, bytes) or not secret):
        raise InterfaceError("secret must be non-empty bytes or None")
    if max_frame_size <= 0 or handshake_timeout <= 0 or idle_timeout <= 0:
        raise ValueError("max_frame_size and the timeouts must be positive")
    if max_frame_size > _MAX_FRAME_LIMIT:
        raise ValueError(f"max_frame_size must be at most {_MAX_FRAME_LIMIT}")
    if not 0 < ping_interval < dead_after:
        raise ValueError("ping_interval must be positive and below dead_after")
    if max_unsent < 1:
        raise ValueError("max_unsent must be positive")
    if window < INITIAL_CREDIT:
        raise ValueError(f"window must be at least {INITIAL_CREDIT}")
    if max_handshaking < 1 or max_handshaking_per_host < 1:
        raise ValueError("max_handshaking and max_handshaking_per_host must be at least 1")


class Transport:
    """Connections to and from the other nodes of a cluster (see the module docstring).

    ``on_request(peer_node_id, msg)`` answers calls: its return value, or the
    result of the awaitable it returns, is the reply. ``on_call(peer, msg,
    reply)``, when given, replaces it: the handler settles ``reply``
    (``set_result``/``set_exception``; ``done()`` is true once settled or past
    the deadline) and the answer is queued at once, with no future between. While it runs
    synchronously, ``deadline`` holds the call's deadline in ``loop.time()``
    terms. ``on_message(peer_node_id, msg)`` receives one-way messages. While
    either runs synchronously, ``source.release(n)`` gives the peer ``n`` items
    of credit back (needed only with ``manual_release``). ``on_received()``, when
    given, runs after the frames of each chunk read from a peer were handled and
    before what they queued is written (work they made ready may run there, so its
    replies go out in the same turn of the loop).
    """

    def __init__(
        self,
        node_id: str,
        secret: bytes | None,
        *,
        on_request: OnRequest | None = None,
        on_message: OnMessage,
        on_call: OnCall | None = None,
        ssl: _ssl.SSLContext | None = None,
        client_ssl: _ssl.SSLContext | None = None,
        max_frame_size: int = 16 * 1024 * 1024,
        handshake_timeout: float = 5.0,
        idle_timeout: float = 30.0,
        max_handshaking: int = 256,
        max_handshaking_per_host: int = 32,
        ping_interval: float = 1.0,
        dead_after: float = 2.5,
        max_unsent: int = 64 * 1024 * 1024,
        window: int = 8192,
        manual_release: bool = False,
        split: Callable[[Any, int], list[tuple[Any, int]] | None] | None = None,
        on_received: Callable[[], None] | None = None,
    ) -> None:
        _check_settings(node_id, secret, max_frame_size, handshake_timeout, idle_timeout,
                        ping_interval, dead_after, max_unsent, window, max_handshaking,
                        max_handshaking_per_host)
        client_ssl = client_ssl or ssl
        check_tls(ssl, client_ssl)
        self.node_id = node_id
        self.deadline = 0.0  # loop-time deadline of the call whose handler is starting
        self._secret = secret
        self._master = master_key(secret)  # every connection's keys derive from it
        self._nonces: set[bytes] = set()  # our HELLO nonces on live connections
        if on_request is None and on_call is None:
            raise InterfaceError("a transport needs on_request or on_call to answer calls")
        self._on_request = on_request
        self._on_message = on_message
        # one way in for calls: an on_request handler is run through on_call too
        self._tasks: set[asyncio.Future[Any]] = set()  # handler tasks we created
        self._on_call: OnCall = on_call or on_request_adapter(self)
        self._ssl = ssl
        self._client_ssl = client_ssl
        self._max_frame_size = max_frame_size
        self._handshake_timeout = handshake_timeout
        self._idle_timeout = idle_timeout
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # bound on use
        self._ping_interval = ping_interval
        self._max_unsent = max_unsent
        self._window = window  # items a peer may have delivered here and not released
        self._grant_batch = max(1, window // 4)  # released items sent back in one CREDIT
        self._manual_release = manual_release
        # splits a weighted one-way message too big for one frame into two, in order
        self._split = split
        # run after each chunk a peer sent was handled, before its replies are written
        self._on_received = on_received
        # with manual_release: what the frame being delivered releases its credit through
        self.source: Connection | CallCredit | None = None
        self._dead_after = dead_after
        self._liveness: asyncio.TimerHandle | None = None
        self._max_handshaking = max_handshaking
        self._max_handshaking_per_host = max_handshaking_per_host
        self._listening: list[socket.socket] = []  # our listening sockets
        self._handshaking: dict[Admission, None] = {}  # oldest first
        self._handshaking_by_host: dict[str, int] = {}  # slots held per peer IP
        self.refused = 0  # connections refused or evicted by the limits (for tests, metrics)
        self.peak_unsent = 0  # most bytes seen waiting unsent to one peer (tests, metrics)
        self.preauth_log = Throttled()  # what unauthenticated peers make us say
        self._advertise = ""  # our listen address as told to peers
        self._conns: dict[str, Connection] = {}  # usable connection per peer address
        self._all: set[Connection] = set()  # every connection with a socket
        self._dials: set[asyncio.Task[None]] = set()  # connects in progress
        self._keepalive: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def address(self) -> str | None:
        """Where peers reach this transport (``"host:port"``), once started."""
        return self._advertise or None

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise InterfaceError("the transport is closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._schedule_keepalive()
            self._liveness = self._loop.call_later(self._ping_interval / 4, self._check_liveness)
        return self._loop

    # ------------------------------------------------------------ listening

    async def start(
        self, host: str, port: int, *, insecure: bool = False, advertise: str | None = None
    ) -> tuple[str, int]:
        """Listen on ``host:port`` (port 0 picks one); returns the bound address.

        ``advertise`` is the address peers should use for us (default: the
        bound one). Without a secret only loopback addresses are allowed,
        unless ``insecure`` is true.
        """
        loop = self._bind_loop()
        if self._listening:
            raise InterfaceError("the transport is already listening")
        if self._secret is None and not insecure and not await self._is_loopback(host, port):
            raise InterfaceError(
                f"refusing to listen on {host!r} without a cluster secret: set a secret, "
                "listen on a loopback address, or pass insecure=True"
            )
        self._listening = await self._bind(host, port)
        for sock in self._listening:
            loop.add_reader(sock.fileno(), self._accept, sock)
        bound = self._listening[0].getsockname()
        bound_host, bound_port = str(bound[0]), int(bound[1])
        self._advertise = advertise or format_address(host or bound_host, bound_port)
        encode_field(self._advertise, "advertised address")
        return bound_host, bound_port

    async def _bind(self, host: str, port: int) -> list[socket.socket]:
        """Listening sockets for every address ``host`` resolves to (all when empty)."""
        infos = await self._loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        socks: list[socket.socket] = []
        seen = set()
        try:
            for family, kind, proto, _, addr in infos:
                if (family, addr) in seen:
                    continue
                seen.add((family, addr))
                sock = socket.socket(family, kind, proto)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(addr)
                sock.listen(_BACKLOG)
                sock.setblocking(False)
        except OSError:
            for sock in socks:
                sock.close()
            raise
        return socks

    def _accept(self, sock: socket.socket) -> None:
        # our own accept loop: asyncio's reports EMFILE through the loop's exception
        # handler (a traceback a second) and knows nothing of unauthenticated peers
        for _ in range(_ACCEPTS):
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as e:
                if e.errno not in _OUT_OF_RESOURCES:
                    raise
                self.preauth_log.warning(
                    "cannot accept connections: %s; retrying every %s s", e, _ACCEPT_RETRY)
                self._loop.remove_reader(sock.fileno())
                self._loop.call_later(_ACCEPT_RETRY, self._resume_accepting, sock)
                return
            self._admit(conn, str(addr[0]))

    def _resume_accepting(self, sock: socket.socket) -> None:
        if not self._closed and sock.fileno() >= 0:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _admit(self, sock: socket.socket, host: str) -> None:
        """Takes a slot for a new connection, or refuses it (closed at once, no TLS work)."""
        held = self._handshaking_by_host.get(host, 0)
        if self._closed or held >= self._max_handshaking_per_host:
            sock.close()
            self.refused += 1
            self.preauth_log.warning(
                "refusing a connection from %s: %d unauthenticated connections from it "
                "(max_handshaking_per_host)", host, held)
            return
        if len(self._handshaking) >= self._max_handshaking:
            self._evict(self._eviction_victim())
        adm = Admission(host, sock)
        self._handshaking[adm] = None
        self._handshaking_by_host[host] = held + 1
        sock.setblocking(False)
        ctx = self._ssl
        adm.task = self._loop.create_task(self._loop.connect_accepted_socket(
            lambda: Connection(self, True, None, adm), sock=sock, ssl=ctx,
            ssl_handshake_timeout=self._handshake_timeout if ctx else None,
        ))
        adm.task.add_done_callback(lambda t: self._accepted(adm, t))

    def _accepted(self, adm: Admission, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is not None:
            self.release(adm)  # the TLS handshake failed or timed out, or we evicted it
            adm.sock.close()  # a no-op if asyncio closed it already
            if not task.cancelled():
                log.debug("TLS handshake with %s failed: %s", adm.host, task.exception())

    def _eviction_victim(self) -> Admission:
        """The oldest unauthenticated connection of the address that holds the most.
        Not the oldest of all: a flood from a few addresses, recycling its connections
        faster than a slow machine completes a handshake, evicted every legitimate
        peer's (tests/test_transport_limits.py). A scan of the addresses: it runs only
        while the table is full, that is under attack."""
        by_host = self._handshaking_by_host
        heaviest = max(by_host, key=by_host.__getitem__)
        for adm in self._handshaking:  # oldest first
            if adm.host == heaviest:
                return adm
        raise AssertionError("the per-host counts disagree with the table")

    def _evict(self, adm: Admission) -> None:
        self.refused += 1
        self.preauth_log.warning(
            "closing the oldest unauthenticated connection (from %s): %d are open "
            "(max_handshaking)", adm.host, len(self._handshaking))
        self.release(adm)
        if adm.conn is not None:
            adm.conn.drop("evicted before authenticating")
        elif adm.task is not None:
            adm.task.cancel()

    def release(self, adm: Admission) -> None:
        """Frees ``adm``'s slot (the connection authenticated or closed); idempotent."""
        if adm in self._handshaking:
            del self._handshaking[adm]
            left = self._handshaking_by_host[adm.host] - 1
            if left:
                self._handshaking_by_host[adm.host] = left
            else:
                del self._handshaking_by_host[adm.host]

    async def _is_loopback(self, host: str, port: int) -> bool:
        known = is_loopback_literal(host)
        if known is not None:
            return known
        infos = await self._loop.getaddrinfo(host, port)
        return bool(infos) and all(is_loopback_literal(str(i[4][0])) for i in infos)

    # ------------------------------------------------------------ calls

    async def request(self, address: str, msg: Any, timeout: float) -> Any:
        """Send ``msg`` as a call to the peer at ``address`` and return its reply.

        Raises ``Timeout`` after ``timeout`` seconds, ``PeerUnavailable`` when
        the peer cannot be reached or the connection is lost in flight, the
        handler's error otherwise (see the module docstring). A convenience over
        ``request_to``, the path the runtime's calls take.
        """
        answer = Answer(loop=self._loop)
        expire = self.request_to(address, msg, timeout, answer)
        try:
            return await answer
        finally:
            if answer.timer is not None:
                answer.timer.cancel()
            if not answer.done() or answer.cancelled():
                expire()  # the caller gave up: forget the call now, not at its deadline

    def request_to(
        self, address: str, msg: Any, timeout: float, target: Any, *, arm: bool = True,
        key: Any = None,
    ) -> Callable[[], None]:
        """``request`` for callers that settle their own object: ``target`` (with
        ``done()``, ``set_result()``, ``set_exception()`` and a writable ``timer``)
        is resolved straight from the frame that answers, with no future between.

        Returns the call's expiry: calling it fails ``target`` with ``Timeout`` and
        forgets the call. With ``arm=False`` no timer is set here: the caller, which
        has a timer of its own for this deadline, calls the expiry (one timer a call).
        With a ``key`` (say, the route of one actor), the call goes ahead of frames of
        other keys that wait for credit; order holds among frames of one key.
        """
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        conn = self._conns.get(address) or self._open(address)
        rid = conn.new_call(target)
        conn.send_counted([REQUEST, rid, timeout, msg], 1, key)
        expire = partial(_expire_call, conn, rid, address, timeout)
        if arm:
            target.timer = self._loop.call_later(timeout, expire)
        return expire

    def connections(self) -> list[tuple[bool, Any]]:
        """``(authenticated, socket or None)`` for every connection open now (for
        metrics: counts by state and the kernel's byte counters of each socket)."""
        out = []
        for conn in self._all:
            tr = conn.transport
            sock = tr.get_extra_info("socket") if tr is not None else None
            out.append((bool(conn.peer_id) and conn.state == READY, sock))
        return out

    def congested(self, address: str, key: Any = None) -> bool:
        """True while frames to ``address`` (those sent with ``key``, when given) wait
        on a full socket buffer or on the peer's credit (it has not released what we
        sent)."""
        conn = self._conns.get(address)
        return conn is not None and conn.congested(key)

    def flush_now(self, address: str) -> None:
        """Write what is queued for ``address`` now rather than on the next turn of
        the loop (a no-op before the connection is up)."""
        conn = self._conns.get(address)
        if conn is not None and conn.out and not conn.receiving:
            conn.flush()

    def credit(self, address: str) -> int:
        """Items the peer at ``address`` lets us send now without holding them: 0 while
        frames to it wait for credit (before it is dialled, the initial credit)."""
        conn = self._conns.get(address)
        if conn is None:
            return INITIAL_CREDIT
        return 0 if conn.held else max(0, conn.credit)

    async def writable(self, address: str, key: Any = None) -> None:
        """Return once frames to ``address`` may be queued again (the socket drained,
        or the connection is gone: sending then fails or drops as usual). Always
        yields to the loop at least once, so queued frames get flushed."""
        await asyncio.sleep(0)
        while True:
            conn = self._conns.get(address)
            if conn is None or conn.state != READY or not conn.congested(key):
                return
            fut: asyncio.Future[None] = self._loop.create_future()
            conn.drain_waiters.append(fut)
            await fut

    def send(self, address: str, msg: Any, weight: int = 1, key: Any = None) -> None:
        """Queue a one-way ``msg`` to the peer at ``address`` (at most once, in order).

        ``msg`` counts as ``weight`` items of the peer's window (a batch of
        casts: its length). Beyond the peer's credit it waits here, in order,
        and ``congested(address)`` is true.
        """
        conn = self._conns.get(address) or self._open(address)
        frame = [MESSAGE, msg] if weight == 1 else [MESSAGE, msg, weight]
        if conn.credit > 0 and not conn.held:  # send_counted() inlined: the hot path
            conn.credit -= weight
            conn.out.append(frame)
            if conn.flush_handle is None and conn.state == READY and not conn.receiving:
                conn.flush_handle = self._loop.call_soon(conn.flush)
        else:
            conn.send_counted(frame, weight, key)

    def _open(self, address: str) -> Connection:
        loop = self._bind_loop()
        host, port = parse_address(address)
        conn = Connection(self, False, address)
        self._conns[address] = conn
        task = loop.create_task(self._dial(conn, host, port))
        self._dials.add(task)
        task.add_done_callback(self._dials.discard)
        return conn

    async def _dial(self, conn: Connection, host: str, port: int) -> None:
        ctx = self._client_ssl
        reason = "cancelled"
        try:
            await asyncio.wait_for(
                self._loop.create_connection(
                    lambda: conn, host, port, ssl=ctx,
                    server_hostname=host if ctx is not None else None,
                    ssl_handshake_timeout=self._handshake_timeout if ctx is not None else None,
                ),
                self._handshake_timeout,
            )
            reason = ""
        except (OSError, asyncio.TimeoutError) as e:
            reason = str(e) or type(e).__name__
        except Exception as e:  # a bad TLS context, say: the calls fail, the loop hears nothing
            log.exception("cannot connect to %s", conn.address)
            reason = f"{type(e).__name__}: {e}"
        finally:
            if reason:
                conn.dial_failed(reason)

    def _authenticated(self, conn: Connection, peer_address: str) -> None:
        if conn.server and peer_address and not self._closed and peer_address not in self._conns:
            conn.address = peer_address  # reuse the peer's connection for our calls to it
            self._conns[peer_address] = conn

    def _forget(self, conn: Connection) -> None:
        if conn.address is not None and self._conns.get(conn.address) is conn:
            del self._conns[conn.address]

    # ------------------------------------------------------------ keepalive

    def _schedule_keepalive(self) -> None:
        self._keepalive = self._loop.call_later(self._idle_timeout / 4, self._check_idle)

    def _check_idle(self) -> None:
        now = self._loop.time()
        quiet = self._idle_timeout / 4
        for conn in list(self._all):
            if conn.state != READY:
                continue
            idle = now - conn.last_rx
            if idle >= self._idle_timeout:
                conn.fail(f"no traffic for {idle:.1f} s", PeerUnavailable)
            elif idle >= quiet:
                conn.queue([PING])
        if not self._closed:
            self._schedule_keepalive()

    def _check_liveness(self) -> None:
        # a connection with calls in flight must show life every dead_after seconds:
        # a frame from the peer, or our unsent output shrinking (the peer reads it)
        now = self._loop.time()
        for conn in list(self._all):
            if conn.state == READY and conn.pending:
                silent = conn.silent_for(now)
                if silent >= self._dead_after:
                    conn.fail(f"no sign of life for {silent:.1f} s with calls in flight "
                              "(a dead or blackholed link?)", PeerUnavailable)
                elif silent >= self._ping_interval and now - conn.last_ping >= self._ping_interval:
                    conn.last_ping = now
                    conn.queue([PING])
        if not self._closed:
            self._liveness = self._loop.call_later(self._ping_interval / 4, self._check_liveness)

    # ------------------------------------------------------------ closing

    async def close(self) -> None:
        """Stop listening and close every connection; calls in flight raise PeerUnavailable."""
        if self._closed:
            return
        self._closed = True
        for timer in (self._keepalive, self._liveness):
            if timer is not None:
                timer.cancel()
        for sock in self._listening:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        for adm in list(self._handshaking):
            if adm.conn is None and adm.task is not None:
                adm.task.cancel()
        for task in list(self._dials):
            task.cancel()
        conns = set(self._all) | set(self._conns.values())
        for conn in conns:
            conn.close("the transport is closing")
        for t in list(self._tasks):
            t.cancel()
        waits = [c.closed for c in conns] + list(self._dials) + list(self._tasks)
        if waits:
            await asyncio.wait(waits, timeout=_CLOSE_GRACE)
            for conn in conns:
                if not conn.closed.done() and conn.transport is not None:
                    conn.transport.abort()

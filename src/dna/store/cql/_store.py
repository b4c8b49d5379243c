"""``ScyllaStore``: the DNA store on a CQL database (ScyllaDB; Apache Cassandra in CI).

Layout and protocol (DESIGN.md, "CQL layout"): one partition per actor in
``actor_data``; its static columns hold the owner and epoch; every claim and
release is a lightweight transaction (LWT) on them, and every commit is one
unlogged single-partition batch that opens with ``UPDATE ... SET epoch = e
... IF owner = me AND epoch = e``: applied whole, or refused whole when a newer
claim exists. All requests go through the one asyncio bridge of
``_bridge``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import random
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

try:
    from cassandra.query import BatchStatement, BatchType
except ImportError as _exc:  # the driver is the [cql] extra
    raise ImportError(
        f"the CQL store needs scylla-driver: pip install 'dna-actors[cql]' ({_exc})"
    ) from _exc

from ...errors import (
    CommitFailed,
    InterfaceError,
    NotOwner,
    StaleEpoch,
    StoreError,
    StoreUnavailable,
)
from .._gil import SwitchInterval
from ..base import (
    ALIVE,
    DEAD,
    TIMERS_MODULE,
    UNKNOWN,
    ActorId,
    Claim,
    DueTimer,
    NodeRecord,
    Row,
    Store,
    prefix_end,
)
from . import _catalog
from ._bridge import (
    AMBIGUOUS,
    LWT,
    SERIAL,
    UNREACHABLE,
    Bridge,
    map_error,
    parse_hosts,
    unknown_outcome,
)
from ._schema import Statements, check_keyspace, replication_map
from ._session import Peers, Reread, connect, shutdown
from ._slots import DEFAULT_SLOTS, Slots, parse_setting
from ._timers import TimerIndex

__all__ = ["ScyllaStore"]

log = logging.getLogger("dna.store.cql")

_CLAIM_ROUNDS = 6  # LWT attempts of one claim before giving up under contention
_ROW_OVERHEAD = 64  # bytes a batch spends per row beyond its key and value (estimate)
_MAX_STATEMENTS = 0xFFFF  # statements one CQL batch can carry (the fence is one of them)
_MAX_KEY = 0xFFFF  # bytes of one clustering key value (CQL's limit)
_DEFAULT_COMMIT_BYTES = 15 * 1024 * 1024  # under the 16 MiB native frame and mutation size


def _marker() -> int:
    """A fresh commit marker: which write last touched an actor's partition."""
    return random.getrandbits(63)


class ScyllaStore(Store):
    """A DNA store on ScyllaDB or Apache Cassandra (CQL protocol, LWT).

    ``hosts``: contact points, ``"host"`` or ``"host:port"`` (port 9042 by
    default). ``keyspace`` is created when missing, with ``replication`` (a CQL
    replication map; default ``SimpleStrategy``, replication factor 1), and on
    ScyllaDB without tablets (ScyllaDB has no LWT on tablets keyspaces).

    Consistency: writes at QUORUM with SERIAL conditions; ``read`` and
    ``list`` at QUORUM, which sees every commit that returned (commits are
    written at QUORUM); ``owner_of`` and the resolution of unknown outcomes at
    SERIAL. With ``local_dc``: LOCAL_QUORUM / LOCAL_SERIAL, routed to that
    data centre.

    Errors: no server reachable at ``open`` -> ``StoreUnavailable`` once
    ``connect_timeout`` seconds of retries have passed. Server down later ->
    ``StoreUnavailable`` from each operation; the driver reconnects when it is
    back, without reopening the store. A commit whose outcome is unknown (a
    timeout, a lost connection) is resolved before ``commit`` answers: a SERIAL
    read of the partition's commit marker tells whether it applied. Not applied
    -> ``CommitFailed`` (or ``StaleEpoch``); unresolvable within
    ``resolve_timeout`` -> ``CommitUnknown`` (a claim or release:
    ``StoreUnavailable``).
    Success is never reported for a write that did not apply, and no write is
    sent twice. A commit larger than ``max_commit_bytes`` (estimated) or than
    the server accepts, or of more than 65,534 writes (the protocol's limit of
    statements per batch), fails with ``StoreError`` and writes nothing; it is
    never split.

    Liveness: an open store bumps its node's heartbeat counter every
    ``heartbeat_interval`` seconds (None: only when ``heartbeat()`` is called)
    and watches every node's counter. A peer is dead when its counter did not
    move for ``lease`` seconds of this process's monotonic clock, or when its
    row is gone (``close`` deletes it); suspect (still not reclaimable) once it
    did not move for two heartbeat intervals. Actors of dead and draining nodes
    may be reclaimed. The row of a node dead for ``dead_node_grace`` more
    seconds is deleted by whichever node sees it so (a conditional delete: a
    row whose counter moved meanwhile stays). This node's own lease is judged
    by ``last_heartbeat`` and ``lease_term`` (see ``Store``).

    Size limits: a key up to 65,535 bytes (CQL's clustering key limit), a
    value up to ``max_commit_bytes`` less a key and overhead.

    ``activation``: how a node comes to own an actor. ``"actor"`` (the
    default): one LWT per activation on the actor's own partition (a claim).
    ``"slots"``: the name space is cut into ``slots`` slots (1024 by default);
    a node takes a whole slot by one LWT and then activates its actors with no
    store round trip; commits stay fenced batches (``_slots``, and
    docs/cluster-protocol.md for the safety argument). The first node to open a
    keyspace fixes its mode and slot count; a node of the other mode is refused
    (``StoreError``), one asking another slot count adopts the keyspace's.

    ``create``: False refuses a missing keyspace (``StoreError``) instead of
    creating it. ``cluster_options``: extra keyword arguments for the driver's ``Cluster``
    (``auth_provider``, ``ssl_context``, ``compression``, ...). A cancelled
    ``commit`` may still be applied.
    """

    kind = "cql"
    lease: float  # always a lease store

    def __init__(
        self,
        hosts: Sequence[str],
        keyspace: str = "dna",
        replication: Mapping[str, Any] | None = None,
        *,
        local_dc: str | None = None,
        connect_timeout: float = 10.0,
        request_timeout: float = 10.0,
        resolve_timeout: float = 10.0,
        heartbeat_interval: float | None = 1.0,
        lease: float = 10.0,
        dead_node_grace: float = 60.0,
        max_commit_bytes: int | None = _DEFAULT_COMMIT_BYTES,
        cluster_options: Mapping[str, Any] | None = None,
        switch_interval: float | None = 0.001,
        create: bool = True,
        activation: str = "actor",
        slots: int = DEFAULT_SLOTS,
    ) -> None:
        if activation not in ("actor", "slots"):
            raise ValueError(f"activation must be 'actor' or 'slots', not {activation!r}")
        if not 0 < slots < 2**31:
            raise ValueError("slots must be a positive int")
        self.activation = activation  # "actor": an LWT per claim; "slots": a lease per slot
        self.slot_count = slots  # wanted; the keyspace's own setting wins (see open)
        self._slots: Slots | None = None  # the slot leases, while open with activation=slots
        if switch_interval is not None and not switch_interval > 0:
            raise ValueError("switch_interval must be > 0 or None")
        # the driver's reactor thread and the event loop share the GIL: while open,
        # the switch interval is at most this (None: leave it alone); see _gil.py
        self.switch_interval = switch_interval
        self._switch = SwitchInterval()
        self._points, self._port = parse_hosts(hosts)
        self.hosts = list(hosts)  # as given
        self.keyspace = check_keyspace(keyspace)  # lower case, as CQL folds it
        self._replication = replication_map(replication)
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("request_timeout", request_timeout),
            ("resolve_timeout", resolve_timeout),
            ("lease", lease),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0")
        if not dead_node_grace >= 0:
            raise ValueError("dead_node_grace must be >= 0")
        if heartbeat_interval is not None and not heartbeat_interval > 0:
            raise ValueError("heartbeat_interval must be > 0 or None")
        self.local_dc = local_dc
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.resolve_timeout = resolve_timeout
        self.heartbeat_interval = heartbeat_interval
        self.lease: float = lease
        self.dead_node_grace = dead_node_grace
        self.create = create  # False: a missing keyspace is an error, not created
        self.max_commit_bytes = max_commit_bytes
        self.max_key_bytes = _MAX_KEY
        self.max_value_bytes = (max_commit_bytes or _DEFAULT_COMMIT_BYTES) - _MAX_KEY - 1024
        self._options = dict(cluster_options or {})
        self.node_id: str | None = None  # set by open
        self._cluster: Any = None  # driver Cluster, while open
        self._bridge: Bridge | None = None  # requests go through it, while open
        self._st: Statements | None = None  # prepared statements
        self._timers: TimerIndex | None = None  # timers' due index, while open
        self._peers = self._new_peers()  # what we saw of other nodes' heartbeats
        self._beat = 0  # this node's heartbeat counter
        self._beat_task: asyncio.Task[None] | None = None  # background heartbeats
        self._last_beat: float | None = None  # loop time the last good heartbeat was SENT
        self._term = 0  # grows when our lease lapsed and a heartbeat took it up again
        self.address = ""  # ours, as registered (heartbeats rewrite it)
        self._states: dict[str, tuple[str, bool]] = {}  # peer -> (state, draining), last listing
        self._node_reads: dict[str, Reread] = {}  # peer -> its node row's reads under way

    @property
    def per_actor_claims(self) -> bool:  # type: ignore[override]
        """False with activation=slots: a name follows its slot's lease, so releasing one
        name does not let a peer claim it (rebalancing by name is off)."""
        return self.activation == "actor"

    def __repr__(self) -> str:
        state = f"open as {self.node_id}" if self._bridge else "closed"
        return f"ScyllaStore({self.hosts!r}, keyspace={self.keyspace!r}, {state})"

    def _open(self) -> tuple[Bridge, Statements, str]:
        if self._bridge is None or self._st is None or self.node_id is None:
            raise InterfaceError("ScyllaStore is not open")
        return self._bridge, self._st, self.node_id

    # ------------------------------------------------------------ lifecycle

    async def open(self, node_id: str, address: str = "") -> None:
        if self._cluster is not None:
            raise InterfaceError(f"ScyllaStore is already open as {self.node_id}")
        loop = asyncio.get_running_loop()
        cluster, session, st = await connect(self, loop)
        self._cluster, self._st = cluster, st
        self._switch.lower(self.switch_interval)
        self._bridge = bridge = Bridge(loop, session, self.request_timeout)
        self._peers = self._new_peers()
        self._node_reads = {}
        self._beat = 0
        self.address = address
        sent = loop.time()
        try:
            count = await self._settle_activation(bridge, st)
            await self._do(bridge.run(st.node_up, (node_id, address, 0)), f"registering {node_id}")
        except BaseException:
            self._cluster = self._bridge = self._st = None
            await shutdown(cluster, loop)
            raise
        self.node_id = node_id
        self._states = {}
        self._slots = Slots(self, count) if count else None
        self._timers = TimerIndex(st, self._query)
        self._last_beat = sent
        if self.heartbeat_interval is not None:
            self._beat_task = loop.create_task(self._beat_forever(self.heartbeat_interval))

    async def _settle_activation(self, bridge: Bridge, st: Statements) -> int:
        """Fix (first open) or check the keyspace's activation mode; the slot count to
        use, 0 for per-actor claims."""
        want = "actor" if self.activation == "actor" else f"slots/{self.slot_count}"
        rows = await self._do(bridge.run(st.setting_init, ("activation", want), LWT),
                              "reading the keyspace's activation setting")
        row = rows[0]
        have = want if row["[applied]"] else row.get("value") or want
        kind, count = parse_setting(have)
        if kind != self.activation:
            raise StoreError(
                f"keyspace {self.keyspace} uses activation={kind} and this store was opened "
                f"with activation={self.activation}: one keyspace never mixes the two (their "
                f"epochs do not compare); open it with ?activation={kind}"
            )
        if count and count != self.slot_count:
            log.info("keyspace %s has %d slots (not %d): using its count", self.keyspace,
                     count, self.slot_count)
        return count

    async def close(self) -> None:
        """Stop heartbeats, delete this node's row (its claims become reclaimable),
        disconnect. Idempotent; a server that cannot be reached does not stop it."""
        cluster, self._cluster = self._cluster, None
        if cluster is None:
            return
        self._switch.restore()
        task, self._beat_task = self._beat_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        bridge, st, me = self._bridge, self._st, self.node_id
        slots, self._slots = self._slots, None
        if slots is not None and me is not None:
            with contextlib.suppress(Exception):  # before our row goes: peers take them clean
                await slots.release_all(me)
        self._bridge = self._st = None
        self.node_id = None
        if bridge is not None and st is not None and me is not None:
            with contextlib.suppress(Exception):
                await bridge.run(st.node_down, (me,))
        await shutdown(cluster, asyncio.get_running_loop())

    async def _beat_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.heartbeat()
                await self.nodes()  # watch everyone's counter
            except StoreError as exc:
                log.debug("heartbeat of %s failed: %s", self.node_id, exc)
            except Exception:  # never let the task die of a surprise
                log.exception("heartbeat of %s failed", self.node_id)

    def _new_peers(self) -> Peers:
        beat = self.heartbeat_interval
        return Peers(self.lease, 2 * beat if beat is not None else None)

    # ------------------------------------------------------------ our own lease

    @property
    def last_heartbeat(self) -> float | None:
        """Loop time at which the last heartbeat known to have succeeded was *sent*
        (registration at ``open`` counts); see ``Store.last_heartbeat``."""
        return self._last_beat

    @property
    def lease_term(self) -> int:
        """See ``Store.lease_term``: grows when a heartbeat is answered more than
        ``lease`` seconds (of our monotonic clock) after the previous successful
        one was sent."""
        return self._term

    def _beat_succeeded(self, sent: float, answered: float) -> None:
        last = self._last_beat
        if last is not None and sent <= last:
            return  # an older heartbeat answered late: it proves nothing newer
        # The write landed at some moment before `answered`; peers start their lease
        # count no earlier than when they saw the previous heartbeat, itself sent at
        # `last`. Only if it landed within `lease` of `last` can no peer have judged
        # us dead in between; `answered` bounds the landing from above.
        if last is not None and answered - last > self.lease:
            self._term += 1
            if self._slots is not None:
                self._slots.drop_all()
            log.warning(
                "node %s: no heartbeat landed within %.1f s (lease %.1f s): its lease "
                "may have lapsed and peers may have reclaimed its actors", self.node_id,
                answered - last, self.lease,
            )
        self._last_beat = sent

    # ------------------------------------------------------------ helpers

    async def _do(self, fut: asyncio.Future[Any], doing: str) -> Any:
        """Await a bridge future; driver errors become DNA errors."""
        try:
            return await fut
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise map_error(exc, doing) from exc

    async def _query(self, query: Any, params: Any, doing: str) -> Any:
        """The rows of one plain (not conditional) request."""
        return await self._do(self._open()[0].run(query, params), doing)

    async def _lwt(
        self,
        query: Any,
        params: Any,
        actor: ActorId,
        marker: int,
        doing: str,
        commit: bool = False,
    ) -> tuple[bool, str | None, int | None]:
        """Run a conditional write; ``(applied, owner, epoch)``. An outcome that
        cannot be resolved: ``CommitUnknown`` for a commit, else ``StoreUnavailable``."""
        bridge = self._open()[0]
        try:
            rows = await bridge.run(query, params, LWT)
        except AMBIGUOUS as exc:
            log.info("%s: outcome unknown (%r); reading it back", doing, exc)
            try:
                return await self._resolve(actor, marker, exc, doing)
            except StoreError as err:
                if commit:  # not known whether it applied: never CommitFailed
                    raise unknown_outcome(exc, err, doing) from err
                raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise map_error(exc, doing) from exc
        row = rows[0]
        return bool(row["[applied]"]), row.get("owner"), row.get("epoch")

    async def _resolve(
        self, actor: ActorId, marker: int, exc: BaseException, doing: str
    ) -> tuple[bool, str | None, int | None]:
        """A SERIAL read of the actor's marker: did the write carrying ``marker`` apply?

        A SERIAL read finishes or voids any write still in flight on the partition,
        so its answer is final.
        """
        bridge, st, _ = self._open()
        loop = bridge.loop
        deadline = loop.time() + self.resolve_timeout
        delay = 0.05
        pk = (actor.namespace, actor.type_name, actor.key)
        while True:
            try:
                rows = await bridge.run(st.state, pk, SERIAL)
                break
            except UNREACHABLE as again:
                if loop.time() + delay > deadline:
                    raise StoreUnavailable(
                        f"{doing}: outcome unknown ({map_error(exc, 'write').args[0]}), and it "
                        f"could not be read back within {self.resolve_timeout}s: {again!r}"
                    ) from again
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except Exception as other:
                raise map_error(other, f"{doing}: reading back its outcome") from other
        owner, epoch, got = rows[0] if rows else (None, None, None)
        return got == marker, owner, epoch

    # ------------------------------------------------------------ ownership

    async def claim(self, actor: ActorId) -> Claim:
        _, st, me = self._open()
        if self._slots is not None:
            return await self._slots.claim(actor, me)
        expect: tuple[str | None, int | None] = (None, None)  # first guess: a new actor
        pk = (actor.namespace, actor.type_name, actor.key)
        for _ in range(_CLAIM_ROUNDS):
            epoch = (expect[1] or 0) + 1
            marker = _marker()
            params = (me, epoch, int(time.time() * 1000), marker, *pk, *expect)
            applied, owner, now = await self._lwt(
                st.claim, params, actor, marker, f"claim of {actor}"
            )
            if applied:
                return Claim(actor, me, epoch, _handle(actor))
            if owner is not None and owner != me and not await self._reclaimable(owner):
                raise NotOwner(f"{actor} is owned by live node {owner}", owner=owner)
            expect = (owner, now)
        raise StoreUnavailable(f"claim of {actor}: its ownership kept changing; try again")

    def peer_state(self, node_id: str) -> str | None:
        """How the last listing of nodes judged ``node_id`` (DEAD when draining), or None."""
        seen = self._states.get(node_id)
        if seen is None:
            return None
        return DEAD if seen[1] else seen[0]

    async def _reclaimable(self, node_id: str) -> bool:
        """Whether ``node_id`` is dead (lease out, or no row) or draining, from a read
        of its row sent after this call; concurrent callers share reads (``Reread``)."""
        self._open()
        reads = self._node_reads.get(node_id)
        if reads is None:
            reads = self._node_reads[node_id] = Reread(lambda: self._read_reclaimable(node_id))
        try:
            return bool(await reads.ask())
        finally:
            if reads.idle and self._node_reads.get(node_id) is reads:
                del self._node_reads[node_id]

    async def _read_reclaimable(self, node_id: str) -> bool:
        bridge, st, _ = self._open()
        sent = bridge.loop.time()
        rows = await self._do(bridge.run(st.node_get, (node_id,)), f"reading node {node_id}")
        if not rows:
            return True
        heartbeat, draining = rows[0]
        if draining:
            return True
        return self._peers.judge(node_id, heartbeat, bridge.loop.time(), sent)[0] == DEAD

    async def release(self, claim: Claim) -> None:
        """Give up ``claim`` (the epoch stays); ``StaleEpoch`` if it is no longer current."""
        _, st, _ = self._open()
        if self._slots is not None:  # the name stays with its slot's lease
            self._slots.release(claim)
            return
        actor = claim.actor
        marker = _marker()
        params = (marker, actor.namespace, actor.type_name, actor.key, claim.node_id, claim.epoch)
        applied, owner, epoch = await self._lwt(
            st.release, params, actor, marker, f"release of {actor}"
        )
        if not applied:
            raise _stale("release", claim, owner, epoch)

    async def owner_of(self, actor: ActorId) -> tuple[str | None, int]:
        """``(owner, epoch)`` as committed (a SERIAL read); ``(None, 0)`` if never claimed."""
        bridge, st, _ = self._open()
        if self._slots is not None:
            return await self._slots.holder_of(actor)
        pk = (actor.namespace, actor.type_name, actor.key)
        rows = await self._do(bridge.run(st.state, pk, SERIAL), f"reading the owner of {actor}")
        if not rows:
            return None, 0
        owner, epoch, _ = rows[0]
        return owner, epoch or 0

    # ------------------------------------------------------------ data

    async def commit(self, claim: Claim, rows: list[Row]) -> None:
        _, st, _ = self._open()
        if self._slots is not None:
            await self._slots.commit(st, claim, rows)
            return
        marker = _marker()
        timers: builtins.list[tuple[str, bytes]] = []
        batch = self._batch(st, claim, marker, rows, timers)
        doing = f"commit of {len(rows)} writes to {claim.actor} at epoch {claim.epoch}"
        if timers and self._timers is not None:  # the due index first (see _timers)
            await self._timers.put(claim.actor, timers)
        applied, owner, epoch = await self._lwt(batch, None, claim.actor, marker, doing, True)
        if applied:
            return
        if owner == claim.node_id and epoch == claim.epoch:  # resolved: it did not apply
            raise CommitFailed(f"{doing} did not apply (the server timed out); nothing written")
        raise _stale("commit", claim, owner, epoch)

    def _batch(
        self, st: Statements, claim: Claim, marker: int, rows: list[Row],
        timers: builtins.list[tuple[str, bytes]], fence: tuple[Any, Any] | None = None,
    ) -> Any:
        """The fenced batch of ``rows``, values serialised here (not by the driver per row).

        Later writes of a key replace earlier ones (a batch applies all its
        statements at one timestamp, so it must not hold two writes of a key).
        """
        actor = claim.actor
        batch = BatchStatement(BatchType.UNLOGGED)
        if fence is None:
            batch.add(st.fence, (claim.epoch, marker, *_pk(actor), claim.node_id, claim.epoch))
        else:
            batch.add(*fence)
        ns, tn, ak = _handle(actor) if not isinstance(claim.handle, tuple) else claim.handle
        put, delete = st.put.query_id, st.delete.query_id
        append = batch._statements_and_parameters.append
        modules: dict[str, bytes] = {}
        last: dict[tuple[str, str], bytes | None] = {}
        size = 0
        try:
            for module, key, value in rows:
                last[(module, key)] = value
            for (module, key), value in last.items():
                mb = modules.get(module)
                if mb is None:
                    mb = modules[module] = module.encode()
                kb = key.encode()
                if value is None:
                    append((True, delete, (ns, tn, ak, mb, kb)))
                    size += len(kb)
                else:
                    if type(value) is not bytes:
                        value = _as_bytes(value)
                    append((True, put, (value, ns, tn, ak, mb, kb)))
                    if module == TIMERS_MODULE:  # indexed before the batch is sent
                        timers.append((key, value))
                    size += len(kb) + len(value)
        except (AttributeError, TypeError, ValueError) as exc:
            raise StoreError(
                f"commit of {actor}: modules and keys must be str, values bytes or None: {exc}"
            ) from None
        if len(last) >= _MAX_STATEMENTS:
            raise StoreError(
                f"commit of {len(last)} writes to {actor} is over the CQL limit of "
                f"{_MAX_STATEMENTS - 1} writes per batch; nothing was written. A commit is "
                "one batch and is never split: write less per batch"
            )
        size += _ROW_OVERHEAD * len(last)
        if self.max_commit_bytes is not None and size > self.max_commit_bytes:
            raise StoreError(
                f"commit of {len(last)} writes to {actor} is about {size} bytes, over "
                f"max_commit_bytes={self.max_commit_bytes}; nothing was written. A commit is "
                "one batch and is never split: write less per batch"
            )
        return batch

    async def read(self, claim: Claim, module: str, key: str) -> bytes | None:
        bridge, st, _ = self._open()
        if self._slots is not None:
            await self._slots.touch(claim)
        params = (*_pk(claim.actor), module, key)
        rows = await self._do(bridge.run(st.read, params), f"reading {claim.actor}")
        return rows[0][0] if rows else None

    async def read_many(
        self, claim: Claim, module: str, keys: builtins.list[str]
    ) -> builtins.list[bytes | None]:
        """Every key's point read in flight at once: a timer firing of 100 names
        waited on 100 round trips one after another."""
        return list(await asyncio.gather(*(self.read(claim, module, key) for key in keys)))

    async def list(
        self,
        claim: Claim,
        module: str,
        prefix: str = "",
        limit: int = 100,
        start_after: str | None = None,
    ) -> builtins.list[tuple[str, bytes]]:
        bridge, st, _ = self._open()
        if self._slots is not None:
            await self._slots.touch(claim)
        if limit <= 0:
            return []
        end = prefix_end(prefix)
        strict = start_after is not None and start_after >= prefix
        low: str = start_after if start_after is not None and strict else prefix
        params: tuple[Any, ...] = (*_pk(claim.actor), module, low)
        if end is None:
            query = st.list_gt if strict else st.list_ge
            params += (min(limit, 2**31 - 1),)
        else:
            if low >= end:
                return []
            query = st.list_gt_lt if strict else st.list_ge_lt
            params += (end, min(limit, 2**31 - 1))
        rows = await self._do(bridge.run(query, params), f"listing {claim.actor}")
        if prefix and end is None:  # a prefix of only U+10FFFF: filter here
            return [(k, v) for k, v in rows if k.startswith(prefix)]
        return [(k, v) for k, v in rows]

    # ------------------------------------------------------------ timers

    async def due_timers(
        self, now: int, limit: int, after: DueTimer | None = None,
        types: Collection[str] | None = None,
    ) -> builtins.list[DueTimer]:
        """Entries of the ``timers_due`` index due by ``now`` (see ``_timers``)."""
        index = self._index()
        if types is None:
            types = await index.types()
        return await index.due(now, limit, after, types)

    async def forget_timers(self, entries: builtins.list[DueTimer]) -> None:
        """Delete stale entries of the due index."""
        await self._index().forget(entries)

    def _index(self) -> TimerIndex:
        self._open()
        assert self._timers is not None
        return self._timers

    # ------------------------------------------------------------ nodes

    async def nodes(self) -> builtins.list[NodeRecord]:
        """Every node row, with liveness judged on this node's own clock from each
        counter's movement (``NodeRecord.state``); rows of nodes dead for
        ``dead_node_grace`` seconds past the lease are deleted here."""
        bridge, st, me = self._open()
        sent = bridge.loop.time()
        rows = await self._do(bridge.run(st.node_all, urgent=True), "listing nodes")
        now = bridge.loop.time()
        out = []
        collect = []
        states: dict[str, tuple[str, bool]] = {}  # a node whose row is gone is not judged
        for node_id, address, heartbeat, draining, load in sorted(rows, key=lambda r: r[0]):
            if node_id == me:
                last = self._last_beat
                state, age = ALIVE, (None if last is None else now - last)
            else:
                state, age = self._peers.judge(node_id, heartbeat, now, sent)
                if state == DEAD and age is not None and age >= self.lease + self.dead_node_grace:
                    collect.append((node_id, heartbeat))
            alive = None if state == UNKNOWN else state != DEAD
            states[node_id] = (state, bool(draining))
            out.append(
                NodeRecord(
                    node_id, address or "", heartbeat or 0, bool(draining), load or 0, alive,
                    state, age,
                )
            )
        self._states = states
        for node_id, heartbeat in collect:
            await self._collect(node_id, heartbeat)
        return out

    async def _collect(self, node_id: str, heartbeat: Any) -> None:
        """Delete a dead node's row if its counter still reads ``heartbeat``."""
        bridge, st, _ = self._open()
        try:
            rows = await bridge.run(st.node_collect, (node_id, heartbeat), LWT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next look will try again
            log.debug("collecting the row of dead node %s failed: %r", node_id, exc)
            return
        if rows and rows[0]["[applied]"]:
            log.info("deleted the row of node %s, dead for over %.0f s", node_id,
                     self.lease + self.dead_node_grace)
            self._peers.forget(node_id)

    async def set_draining(self, draining: bool = True) -> None:
        """Mark this node draining: its actors become claimable by other nodes."""
        bridge, st, me = self._open()
        await self._do(bridge.run(st.node_draining, (draining, me)), f"marking {me} draining")

    async def heartbeat(self, load: int | None = None) -> None:
        """Advance this node's heartbeat counter (and record its load). On success
        ``last_heartbeat`` becomes the loop time this heartbeat was sent."""
        bridge, st, me = self._open()
        self._beat += 1
        sent = bridge.loop.time()
        if load is None:
            fut = bridge.run(st.node_beat, (self._beat, self.address, me), urgent=True)
        else:
            fut = bridge.run(st.node_beat_load, (self._beat, self.address, load, me),
                             urgent=True)
        await self._do(fut, f"heartbeat of {me}")
        self._beat_succeeded(sent, bridge.loop.time())


    # ------------------------------------------------------------ the actor catalog

    async def destroy(self, claim: Claim) -> None:
        await _catalog.destroy(self, claim)

    async def catalog(
        self, type_name: str | None, namespace: str | None, after: str | None, limit: int
    ) -> tuple[builtins.list[_catalog.CatalogRow], str | None]:
        return await _catalog.catalog(self, type_name, namespace, after, limit)

    async def dump(self, actor: ActorId, limit: int) -> builtins.list[Row] | None:
        return await _catalog.dump(self, actor, limit)


def _pk(actor: ActorId) -> tuple[str, str, str]:
    return actor.namespace, actor.type_name, actor.key


def _handle(actor: ActorId) -> tuple[bytes, bytes, bytes]:
    """The partition key columns as the driver sends them (UTF-8)."""
    return actor.namespace.encode(), actor.type_name.encode(), actor.key.encode()


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"value must be bytes, not {type(value).__name__}")


def _stale(doing: str, claim: Claim, owner: str | None, epoch: int | None) -> StaleEpoch:
    return StaleEpoch(
        f"{doing} of {claim.actor} at epoch {claim.epoch} was fenced "
        f"(now epoch {epoch}, owner {owner})"
    )

"""Slot leases: the CQL store's activation path without a per-actor LWT.

``ScyllaStore(activation="slots")`` (``cql://.../ks?activation=slots``). The
name space is cut into ``count`` slots (a CRC-32 of the name, modulo the count,
which the keyspace's ``settings`` table fixes at first open). A node takes a
slot by one LWT on the ``slots`` table, which raises the slot's epoch; while it
holds the slot, activating any actor of it costs no store round trip: the claim
is the slot's epoch. Every commit stays one fenced single-partition batch; its
fence is ``SET epoch = S, owner = me IF epoch <= S`` (``IF epoch = null`` for an
actor never written): a later holder of the slot has a higher ``S``, and once
it has touched the actor, commits of earlier holders are refused.

Safety (docs/cluster-protocol.md has the whole argument):

- A slot passes on only as an actor did: from a holder whose lease ran out on
  the taker's clock, from a draining holder, or released. A holder serves only
  under its node lease (``Node`` fences itself at ``fence_fraction * lease``)
  and drops every slot when a heartbeat shows the lease may have lapsed.
- A slot taken from a holder that did not release it cleanly (dead, paused,
  draining) is *dirty*: that holder may have a commit in flight, even one the
  server accepted but did not finish (a later Paxos round on the partition will
  finish it), or one it sends after waking. So the first store access of each
  actor in a dirty slot is a Paxos-level write, the fence above: it finishes any
  such proposal before the new holder reads, and raises the actor's epoch so
  that anything the old holder sends later is refused. Reads after it are plain.
- A slot never held, or released by a holder none of whose commits in that slot
  was in flight or of unknown outcome, is *clean*: nothing can land behind the
  new holder's back, so its actors are read without a fence.

An actor that never touches its storage (no reads, no writes) costs nothing
at all, even after an unclean takeover.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import zlib
from typing import TYPE_CHECKING, Any

from ...errors import (
    CommitFailed,
    CommitUnknown,
    NotOwner,
    StaleEpoch,
    StoreError,
    StoreUnavailable,
)
from ..base import ALIVE, SUSPECT, ActorId, Claim, Row
from ._bridge import AMBIGUOUS, LWT, SERIAL, UNREACHABLE, map_error
from ._session import Reread

if TYPE_CHECKING:
    from ._store import ScyllaStore

__all__ = ["DEFAULT_SLOTS", "Hold", "Slots", "slot_of"]

log = logging.getLogger("dna.store.cql")

DEFAULT_SLOTS = 1024  # slots of a keyspace's name space unless its first node said otherwise
_ROUNDS = 6  # LWT attempts of one acquisition (or fence) before giving up under contention
# Takes that want a guess at their slot's row read the rows one by one up to this
# many slots at once, and every slot's row in one listing beyond it (see _guess).
_ONE_BY_ONE = 4
Guess = tuple[str | None, int | None, bool | None]  # a slot's row: (holder, epoch, clean)
NO_ROW: Guess = (None, None, None)  # a slot's row that was never written: never held

PK = tuple[str, str, str]

SUB_BITS = 20  # a claim's epoch is slot epoch << SUB_BITS | the actor's claim count in it
_SUB_MAX = (1 << SUB_BITS) - 1


def _marker() -> int:
    """A fresh commit marker (see ``_schema``): which write last touched a row."""
    return random.getrandbits(63)


def slot_of(actor: ActorId, count: int) -> int:
    """The slot of ``actor`` among ``count`` (stable across processes and versions)."""
    name = f"{actor.namespace}\0{actor.type_name}\0{actor.key}".encode()
    return zlib.crc32(name) % count


class Hold:
    """One slot this node holds: its epoch and what is known of its actors."""

    __slots__ = ("dirty", "epoch", "fence", "fenced", "fresh", "inflight", "pending", "slot",
                 "sub", "suspect", "term", "written")

    def __init__(self, slot: int, epoch: int, term: int, fence: bool, fresh: bool) -> None:
        self.slot = slot  # which slot
        self.epoch = epoch  # the slot epoch S: every claim of its actors carries it
        self.term = term  # our lease term when it was taken: a newer term voids it
        self.fence = fence  # taken uncleanly: an actor's first store access is a fence LWT
        self.fresh = fresh  # an actor's first commit guesses `IF epoch = null` (else `<=`):
        # first for a slot never held, then as the last first commit of the slot found
        self.fenced: set[PK] = set()  # actors fenced or committed in this holding
        self.written: set[PK] = set()  # actors whose stored epoch is known not null
        self.sub: dict[PK, int] = {}  # actor -> its latest claim's count in this holding
        self.pending: dict[PK, int] = {}  # actor -> its commits in flight
        self.suspect: set[PK] = set()  # a commit of an older claim may still land: fence first
        self.inflight = 0  # commits sent and not answered, all actors
        self.dirty = False  # a commit of unknown outcome: the release will not be clean

    def needs_fence(self, pk: PK) -> bool:
        """Whether ``pk``'s next store access must be a Paxos-level fence."""
        return pk in self.suspect or (self.fence and pk not in self.fenced)

    def settled(self, pk: PK, epoch: int) -> None:
        """A fence or commit of ``pk`` at claim epoch ``epoch`` applied: whatever was in
        flight for older claims can no longer land (suspicion cleared only if that is
        the actor's latest claim: a newer one may have come while an older commit flew)."""
        self.fenced.add(pk)
        self.written.add(pk)
        if self.sub.get(pk) == epoch & _SUB_MAX:
            self.suspect.discard(pk)

    def __repr__(self) -> str:
        return f"Hold(slot={self.slot}, epoch={self.epoch}, fence={self.fence})"


class Slots:
    """The slot leases of one open ``ScyllaStore`` (activation=slots)."""

    def __init__(self, store: ScyllaStore, count: int) -> None:
        self.store = store  # the open store we run requests through
        self.count = count  # slots of the name space (as the keyspace's settings fix it)
        self.held: dict[int, Hold] = {}  # slots we hold, by number
        self.seen: dict[int, Guess] = {}  # others' rows
        self.taking: dict[int, asyncio.Future[Hold]] = {}  # acquisitions under way
        self.fencing: dict[PK, asyncio.Future[None]] = {}  # per-actor fences under way
        self.refused: dict[int, tuple[float, str]] = {}  # slot -> (loop time, live holder)
        # A slot found held by a peer judged alive is refused from memory while the
        # listing of nodes still judges it so, for a lease at most, without reading
        # its row again. During a failover every try that reaches a survivor before
        # the lease runs out is refused: a read each (once a second each, still
        # thousands) queued in the bridge ahead of the takeover. A peer gives its
        # slots up only as it closes, and then its row leaves the listing.
        self.refusal_ttl = store.lease
        self.wanted: set[int] = set()  # slots whose takes wait for the next read of guesses
        self.guesses = Reread(self._read_guesses)  # those reads, shared (see _guess)

    # ------------------------------------------------------------ claims

    async def claim(self, actor: ActorId, me: str) -> Claim:
        """The claim of ``actor``: the epoch of its slot, taken first if we lack it.

        ``NotOwner`` when a live peer holds the slot (no request if we saw it so)."""
        self._check_lease()
        slot = slot_of(actor, self.count)
        hold = self.held.get(slot)
        pk = (actor.namespace, actor.type_name, actor.key)
        if hold is not None and hold.sub.get(pk, 0) >= _SUB_MAX:
            self.held.pop(slot, None)  # a million claims of one actor: take the slot anew
            hold = None
        if hold is None or hold.term != self.store.lease_term:
            hold = await self._take(slot, me)
        n = hold.sub[pk] = hold.sub.get(pk, -1) + 1
        if hold.pending.get(pk):  # an older claim's commit is in flight: it may land late
            hold.suspect.add(pk)
        return Claim(actor, me, hold.epoch << SUB_BITS | n,
                     (actor.namespace.encode(), actor.type_name.encode(), actor.key.encode()))

    def _check_lease(self) -> None:
        store = self.store
        last = store.last_heartbeat
        bridge = store._open()[0]
        if last is None or bridge.loop.time() - last > store.lease:
            raise StoreUnavailable(
                f"node {store.node_id}: no heartbeat landed for over the lease "
                f"({store.lease} s): it takes no claims until one does"
            )

    def hold_of(self, claim: Claim) -> Hold:
        """The slot ``claim`` was made under, still held in this lease term; else
        ``StaleEpoch`` (nothing is sent: the slot may have passed on)."""
        actor = claim.actor
        hold = self.held.get(slot_of(actor, self.count))
        if (
            hold is None
            or hold.epoch != claim.epoch >> SUB_BITS
            or hold.term != self.store.lease_term
            or hold.sub.get((actor.namespace, actor.type_name, actor.key)) != claim.epoch & _SUB_MAX
        ):
            raise StaleEpoch(
                f"{claim.actor} at epoch {claim.epoch}: released or claimed again, or this "
                "node no longer holds its slot (lease lapsed, or taken by a peer)"
            )
        return hold

    async def _take(self, slot: int, me: str) -> Hold:
        fut = self.taking.get(slot)
        if fut is not None:  # one acquisition per slot; every claim of it waits for it
            return await asyncio.shield(fut)
        loop = self.store._open()[0].loop
        fut = self.taking[slot] = loop.create_future()
        try:
            hold = await self._acquire(slot, me)
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: waiters may be none
            raise
        else:
            fut.set_result(hold)
            return hold
        finally:
            self.taking.pop(slot, None)

    async def _acquire(self, slot: int, me: str) -> Hold:
        store = self.store
        bridge, st, _ = store._open()
        refused = self.refused.get(slot)
        if refused is not None:
            at, live = refused
            if (bridge.loop.time() - at < self.refusal_ttl
                    and store.peer_state(live) in (ALIVE, SUSPECT)):
                raise NotOwner(f"slot {slot} is held by live node {live}", owner=live)
            del self.refused[slot]
        expect = self.seen.get(slot)
        old = self.held.pop(slot, None)
        if old is not None:  # ours in an older term: it may have passed on meanwhile
            expect = (me, old.epoch, False)
        if expect is None:  # a plain read guesses the row; the LWT checks the guess
            expect = await self._guess(slot)
        for _ in range(_ROUNDS):
            holder, epoch, clean = expect
            if holder is not None and holder != me:
                alive = store.peer_state(holder) in (ALIVE, SUSPECT)  # seen alive: ask nothing
                if alive or not await store._reclaimable(holder):
                    if alive:  # not a closed one's: the next claims are refused from memory
                        self.refused[slot] = (bridge.loop.time(), holder)
                    raise NotOwner(f"slot {slot} is held by live node {holder}", owner=holder)
            new = (epoch or 0) + 1
            term = store.lease_term
            marker = _marker()
            params = (me, new, marker, slot, holder, epoch, clean)
            applied, row = await self._lwt(st.slot_take, params, slot, marker,
                                           f"taking slot {slot}")
            if applied:
                # clean: never held, or released with every commit answered
                fence = not (epoch is None or (holder is None and clean is True))
                hold = Hold(slot, new, term, fence, fresh=epoch is None)
                self.seen.pop(slot, None)
                if term == store.lease_term:
                    self.held[slot] = hold
                log.debug("took slot %d at epoch %d (from %s, %s)", slot, new, holder,
                          "fenced" if fence else "clean")
                return hold
            expect = self.seen[slot] = row
        raise StoreUnavailable(f"slot {slot}: its holder kept changing; try again")

    async def _guess(self, slot: int) -> Guess:
        """A guess at ``slot``'s row, ``(holder, epoch, clean)``, read after this call.

        A fresh node takes every slot it is asked for, and a survivor takes all of
        a dead peer's at once: a read of each slot's row was 1,024 requests more
        (half of what taking 1,024 slots sent). Takes that ask together share one
        read: their rows one by one when they are few, every slot's row in one
        listing when they are many. A guess only has to be likely: the take's
        conditional write checks it, and a wrong one comes back with the row as it
        is. If the shared read fails, this take reads its own row."""
        self.wanted.add(slot)
        rows: dict[int, Guess]
        try:
            rows = await self.guesses.ask()
        except StoreError as exc:
            log.debug("a shared read of slots' rows failed (%r): reading slot %d alone",
                      exc, slot)
            rows = await self._read_rows({slot})
        return rows.get(slot, NO_ROW)

    async def _read_guesses(self) -> dict[int, Guess]:
        wanted, self.wanted = self.wanted, set()
        if len(wanted) <= _ONE_BY_ONE:
            return await self._read_rows(wanted)
        store = self.store
        bridge, st, _ = store._open()
        rows = await store._do(bridge.run(st.slot_all), f"listing {self.count} slots' rows")
        return {r[0]: tuple(r[1:4]) for r in rows}

    async def _read_rows(self, slots: set[int]) -> dict[int, Guess]:
        store = self.store
        bridge, st, _ = store._open()
        order = list(slots)
        got = await asyncio.gather(*(
            store._do(bridge.run(st.slot_get, (slot,)), f"reading slot {slot}")
            for slot in order), return_exceptions=True)  # each one retrieved
        rows: dict[int, Guess] = {}
        for slot, r in zip(order, got, strict=True):
            if isinstance(r, BaseException):
                raise r
            if r:
                rows[slot] = tuple(r[0][:3])
        return rows

    async def _lwt(
        self, query: Any, params: Any, slot: int, marker: int, doing: str
    ) -> tuple[bool, tuple[str | None, int | None, bool | None]]:
        """A conditional write on the slot row: ``(applied, (holder, epoch, clean))``;
        an unknown outcome is read back (SERIAL) by its marker."""
        store = self.store
        bridge, st, _ = store._open()
        try:
            rows = await bridge.run(query, params, LWT)
        except AMBIGUOUS as exc:
            log.info("%s: outcome unknown (%r); reading it back", doing, exc)
            row = await self._read_back(st.slot_get, (slot,), doing)
            holder, epoch, clean, got = row or (None, None, None, None)
            return got == marker, (holder, epoch, clean)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise map_error(exc, doing) from exc
        r = rows[0]
        return bool(r["[applied]"]), (r.get("holder"), r.get("epoch"), r.get("clean"))

    async def _read_back(self, query: Any, params: Any, doing: str) -> Any:
        store = self.store
        bridge = store._open()[0]
        loop = bridge.loop
        deadline = loop.time() + store.resolve_timeout
        delay = 0.05
        while True:
            try:
                rows = await bridge.run(query, params, SERIAL)
                return rows[0] if rows else None
            except UNREACHABLE as again:
                if loop.time() + delay > deadline:
                    raise StoreUnavailable(
                        f"{doing}: outcome unknown and not readable within "
                        f"{store.resolve_timeout}s: {again!r}") from again
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except Exception as other:
                raise map_error(other, f"{doing}: reading back its outcome") from other

    # ------------------------------------------------------------ the per-actor fence

    async def touch(self, claim: Claim) -> None:
        """Before a read under ``claim``: in a slot taken uncleanly, fence the actor
        (once per holding) so no commit of an earlier holder can land after it."""
        pk = (claim.actor.namespace, claim.actor.type_name, claim.actor.key)
        while True:
            hold = self.hold_of(claim)
            if not hold.needs_fence(pk):
                return
            fut = self.fencing.get(pk)
            if fut is None:
                break
            with contextlib.suppress(Exception):  # another claim's fence: then look again
                await asyncio.shield(fut)
        loop = self.store._open()[0].loop
        fut = self.fencing[pk] = loop.create_future()
        try:
            await self._fence(claim, hold, pk)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        else:
            fut.set_result(None)
        finally:
            self.fencing.pop(pk, None)

    async def _fence(self, claim: Claim, hold: Hold, pk: PK) -> None:
        store = self.store
        e = claim.epoch
        doing = f"fencing {claim.actor} at epoch {e}"
        new = False  # first guess: the actor has been written (an unclean slot is used)
        for _ in range(_ROUNDS):
            marker = _marker()
            q, params = self.commit_fence(claim, marker, new)
            applied, _, epoch = await store._lwt(q, params, claim.actor, marker, doing)
            if applied:
                if self.held.get(hold.slot) is hold:
                    hold.settled(pk, e)
                return
            if epoch is not None and epoch > e:
                self.overtaken(hold, epoch)
                raise StaleEpoch(f"{doing}: a later claim wrote it (epoch {epoch})")
            new = epoch is None
        raise StoreUnavailable(f"{doing}: its epoch kept changing; try again")

    async def commit(self, st: Any, claim: Claim, rows: list[Row]) -> None:
        """A commit on the slot path: the store's batch, opened by the slot fence."""
        store = self.store
        hold = self.hold_of(claim)
        first = True

        def batch(new: bool, marker: int) -> Any:
            nonlocal first
            timers: list[tuple[str, bytes]] = []
            fence = self.commit_fence(claim, marker, new)
            b = store._batch(st, claim, marker, rows, timers, fence)
            pending = timers if first else []
            first = False
            return b, pending

        doing = f"commit of {len(rows)} writes to {claim.actor} at slot epoch {claim.epoch}"
        await self.fenced(claim, hold, batch, doing)

    async def fenced(self, claim: Claim, hold: Hold, make: Any, doing: str) -> None:
        """Send the batch ``make(new, marker)`` builds (``new``: fenced ``IF epoch =
        null``, else ``IF epoch <= S``), guessing again when the actor's stored epoch
        says the other form applies. ``StaleEpoch`` when a later holder wrote it."""
        from ._store import _stale

        store = self.store
        actor = claim.actor
        pk = (actor.namespace, actor.type_name, actor.key)
        new = hold.fresh and pk not in hold.written
        for _ in range(3):
            marker = _marker()
            batch, timers = make(new, marker)
            if timers and store._timers is not None:  # the due index first (see _timers)
                await store._timers.put(actor, timers)
            hold.inflight += 1
            hold.pending[pk] = hold.pending.get(pk, 0) + 1
            try:
                applied, owner, epoch = await store._lwt(batch, None, actor, marker, doing, True)
            except BaseException as exc:  # unknown outcome, or cancelled once sent
                if not isinstance(exc, StoreError) or isinstance(exc, CommitUnknown):
                    hold.dirty = True  # the slot's release will not be clean,
                    hold.suspect.add(pk)  # and the actor's next access is a fence
                raise
            finally:
                hold.inflight -= 1
                left = hold.pending[pk] - 1
                if left:
                    hold.pending[pk] = left
                else:
                    del hold.pending[pk]
            if applied:
                if pk not in hold.written:  # how the next new actor's commit will guess
                    hold.fresh = new
                if self.held.get(hold.slot) is hold:
                    hold.settled(pk, claim.epoch)
                return
            if epoch is not None and epoch > claim.epoch:
                self.overtaken(hold, epoch)
                raise _stale(doing.split(" ", 1)[0], claim, owner, epoch)
            if new == (epoch is None):  # resolved after a timeout: it did not apply
                raise CommitFailed(f"{doing} did not apply (the server timed out); "
                                   "nothing written")
            new = epoch is None  # the other form of the fence applies: try it
        raise StoreUnavailable(f"{doing}: the actor's epoch kept changing; try again")

    def commit_fence(self, claim: Claim, marker: int, new: bool) -> tuple[Any, Any]:
        """The statement and parameters that open a commit batch of ``claim``."""
        st = self.store._open()[1]
        actor = claim.actor
        pk = (actor.namespace, actor.type_name, actor.key)
        now = int(time.time() * 1000)
        e = claim.epoch
        if new:
            return st.slot_fence_new, (e, claim.node_id, now, marker, *pk)
        return st.slot_fence, (e, claim.node_id, now, marker, *pk, e)

    def release(self, claim: Claim) -> None:
        """The activation of ``claim`` ended: its claim becomes stale here (the slot,
        and so the name, stays with this node)."""
        hold = self.hold_of(claim)
        pk = (claim.actor.namespace, claim.actor.type_name, claim.actor.key)
        hold.sub[pk] = (claim.epoch & _SUB_MAX) + 1 if claim.epoch & _SUB_MAX < _SUB_MAX else 0
        if hold.sub[pk] == 0:  # out of claim counts: take the slot anew on the next claim
            self.held.pop(hold.slot, None)

    def overtaken(self, hold: Hold, epoch: int) -> None:
        """A stored epoch above our claim's: a later holder of the slot (forget the slot),
        or a later claim of ours (only that claim is stale)."""
        if epoch >> SUB_BITS > hold.epoch:
            self.lost(hold)

    def lost(self, hold: Hold) -> None:
        """A later holder wrote in this slot: forget it (the next claim asks the store)."""
        if self.held.get(hold.slot) is hold:
            del self.held[hold.slot]
            log.warning("slot %d at epoch %d passed to a later holder", hold.slot, hold.epoch)

    def drop_all(self) -> None:
        """Our lease may have lapsed: every slot may have passed on."""
        if self.held:
            log.warning("dropping %d slot leases: the node lease may have lapsed",
                        len(self.held))
        self.held.clear()

    # ------------------------------------------------------------ release

    async def release_all(self, me: str) -> None:
        """Give every held slot back: clean when none of its commits is in flight or
        of unknown outcome (the next holder then needs no per-actor fence)."""
        holds, self.held = list(self.held.values()), {}
        if not holds:
            return
        st = self.store._open()[1]
        term = self.store.lease_term

        async def free(h: Hold) -> None:
            clean = h.inflight == 0 and not h.dirty and h.term == term
            marker = _marker()
            try:
                await self._lwt(st.slot_free, (clean, marker, h.slot, me, h.epoch), h.slot,
                                marker, f"releasing slot {h.slot}")
            except StoreError as exc:  # peers take it when our lease runs out
                log.info("release of slot %d failed: %r", h.slot, exc)

        sem = asyncio.Semaphore(256)

        async def bounded(h: Hold) -> None:
            async with sem:
                await free(h)

        await asyncio.gather(*(bounded(h) for h in holds))

    async def holder_of(self, actor: ActorId) -> tuple[str | None, int]:
        """``(holder, epoch)`` of ``actor``'s slot as committed (SERIAL)."""
        store = self.store
        bridge, st, _ = store._open()
        slot = slot_of(actor, self.count)
        rows = await store._do(bridge.run(st.slot_get, (slot,), SERIAL),
                               f"reading the holder of slot {slot}")
        if not rows:
            return None, 0
        holder, epoch, _, _ = rows[0]
        return holder, (epoch or 0) << SUB_BITS


def parse_setting(value: str) -> tuple[str, int]:
    """``("actor", 0)`` or ``("slots", count)`` from a ``settings`` value."""
    kind, _, count = value.partition("/")
    if kind == "actor" and not count:
        return kind, 0
    if kind == "slots" and count.isdigit() and int(count) > 0:
        return kind, int(count)
    raise StoreError(f"unknown activation setting {value!r} in this keyspace")

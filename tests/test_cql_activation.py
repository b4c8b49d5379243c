"""The CQL store's slot path (``activation=slots``) on a real server: what an
activation costs in a held slot, clean and unclean hand-overs of a slot, and the
per-actor fence that keeps a late commit of an earlier holder (or an earlier
claim of this node) from landing behind a read.

The faults are real requests held back and sent late (a commit "in flight"
across a takeover), not mocks of the store."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tests.conftest import CQL_HOSTS, CQL_KEYSPACE, NO_CQL_REASON, opened

from dna.errors import CommitUnknown, NotOwner, StaleEpoch, StoreError
from dna.store import ActorId
from dna.store.base import ALIVE, DEAD
from dna.store.cql import ScyllaStore
from dna.store.cql._slots import slot_of

pytestmark = [pytest.mark.cql, pytest.mark.skipif(not CQL_HOSTS, reason=NO_CQL_REASON)]

KEYSPACE = f"{CQL_KEYSPACE}_slots"[:48]  # shared with test_cql_activation_contract
LEASE = 2.0


def store(keyspace: str = KEYSPACE, **kw: Any) -> ScyllaStore:
    kw.setdefault("activation", "slots")
    kw.setdefault("slots", 64)
    return ScyllaStore(CQL_HOSTS.split(","), keyspace, **kw)


def same_slot(s: ScyllaStore, unique: str, n: int) -> list[ActorId]:
    """``n`` actors of one slot (of ``s``'s keyspace), in a namespace of their own."""
    assert s._slots is not None
    count = s._slots.count
    first = ActorId(f"ns-{unique}", "Thing", "k0")
    want = slot_of(first, count)
    out = [first]
    i = 1
    while len(out) < n:
        a = ActorId(f"ns-{unique}", "Thing", f"k{i}")
        if slot_of(a, count) == want:
            out.append(a)
        i += 1
    return out


def one_per_slot(s: ScyllaStore, unique: str, n: int) -> list[ActorId]:
    """``n`` actors, each in a slot of its own."""
    assert s._slots is not None
    actors: dict[int, ActorId] = {}
    i = 0
    while len(actors) < n:
        actor = ActorId(f"ns-{unique}", "Thing", f"k{i}")
        actors.setdefault(slot_of(actor, s._slots.count), actor)
        i += 1
    return list(actors.values())


class Recorder:
    """Wraps a store's bridge: records every statement sent; with ``hold`` set, the
    commit batches it names are held back (their caller gets the driver's timeout
    at once, and the read-back that follows times out too) and sent only on
    ``release()``, as a request stuck in the network or an unfinished Paxos round."""

    def __init__(self, s: ScyllaStore) -> None:
        self.inner = s._bridge
        assert self.inner is not None and s._st is not None
        self.st = s._st
        self.loop = self.inner.loop
        self.sent: list[Any] = []
        self.hold = False
        self.held: list[tuple[Any, Any, tuple[Any, ...]]] = []

    @property
    def queries(self) -> list[str]:
        """What was sent, by statement name (heartbeats and node listings left out)."""
        out = []
        for q in self.sent:
            name = next((n for n, v in vars(self.st).items() if v is q), None)
            if name is None or not name.startswith("node_"):  # heartbeats go on meanwhile
                out.append(name or type(q).__name__)
        return out

    def run(self, query: Any, params: Any = None, *args: Any, **kw: Any) -> asyncio.Future[Any]:
        from cassandra import OperationTimedOut

        if self.hold and (type(query).__name__ == "BatchStatement" or query is self.st.state):
            fut: asyncio.Future[Any] = self.loop.create_future()
            if query is not self.st.state:
                self.held.append((query, params, args))
            self.loop.call_soon(fut.set_exception, OperationTimedOut("held back (test)"))
            return fut
        self.sent.append(query)
        return self.inner.run(query, params, *args, **kw)  # type: ignore[union-attr]

    async def release(self) -> list[Any]:
        """Send what was held back; the rows of each answer."""
        held, self.held = self.held, []
        return [await self.inner.run(q, p, *a) for q, p, a in held]  # type: ignore[union-attr]


def record(s: ScyllaStore) -> Recorder:
    r = Recorder(s)
    s._bridge = r  # type: ignore[assignment]
    return r


async def judged_alive(b: ScyllaStore, node_id: str) -> None:
    """Until ``b``'s listings of nodes saw ``node_id``'s heartbeat counter move."""
    deadline = time.monotonic() + 10 * LEASE
    while b.peer_state(node_id) != ALIVE:
        assert time.monotonic() < deadline, f"{node_id} never judged alive"
        await b.nodes()
        await asyncio.sleep(0.05)


async def until_taken(b: ScyllaStore, actor: ActorId, timeout: float) -> Any:
    """``b``'s claim of ``actor`` once the holder's lease ran out on ``b``'s clock."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await b.claim(actor)
        except NotOwner:
            assert time.monotonic() < deadline, "the slot never passed on"
            await b.nodes()  # watch the holder's counter, as the heartbeat task does
            await asyncio.sleep(0.1)


async def test_activations_in_a_held_slot_send_nothing(unique: str) -> None:
    async with opened(store(), f"a-{unique}") as s:
        actors = same_slot(s, unique, 20)
        first = await s.claim(actors[0])  # takes the slot: one LWT
        rec = record(s)
        claims = await asyncio.gather(*(s.claim(a) for a in actors[1:]))
        assert rec.sent == []  # nineteen activations, no request
        assert {c.epoch >> 20 for c in claims} == {first.epoch >> 20}
        # a first commit guesses the fence's form (IF epoch = null for a new actor)
        # from the last one of the slot: at most one miss, then one LWT per commit
        await s.commit(claims[0], [("kv", "k", b"v")])
        assert rec.queries in (["BatchStatement"], ["BatchStatement"] * 2)
        del rec.sent[:]
        await s.commit(claims[1], [("kv", "k", b"w")])
        await s.commit(claims[0], [("kv", "k", b"v2")])
        assert await s.read(claims[1], "kv", "k") == b"w"
        assert await s.read(claims[0], "kv", "k") == b"v2"
        assert rec.queries == ["BatchStatement"] * 2 + ["read"] * 2  # no fence: a clean slot


async def test_claims_in_a_slot_a_live_peer_holds_read_its_row_once(unique: str) -> None:
    """While a peer holds a slot, every claim of its actors here is refused. The
    first refusal reads the slot's row; the others must answer from what it read
    (during a failover each try that reached the survivor before the lease ran
    out read the row again: tens of thousands of reads, on the survivor's one
    core). Once the holder is dead, the LWT checks the guess as always."""
    async with opened(store(lease=LEASE, heartbeat_interval=0.2), f"a-{unique}") as a, \
            opened(store(lease=LEASE, heartbeat_interval=0.2), f"b-{unique}") as b:
        actors = same_slot(a, unique, 30)
        await a.claim(actors[0])
        await judged_alive(b, f"a-{unique}")
        rec = record(b)
        for actor in actors[1:]:
            with pytest.raises(NotOwner) as info:
                await b.claim(actor)
            assert info.value.owner == f"a-{unique}"
        assert rec.queries == ["slot_get"]
        assert b._st is not None and not any(q is b._st.node_get for q in rec.sent)
        # a's heartbeats stop: after the lease b takes the slot on its stale guess
        a._beat_task.cancel()  # type: ignore[union-attr]
        taken = await until_taken(b, actors[1], timeout=30)
        assert taken.node_id == f"b-{unique}"
        assert "slot_take" in rec.queries


async def test_a_refusal_from_memory_lasts_only_its_ttl(unique: str) -> None:
    """A live peer can give its slots up (a drain, a close) and only the slot's row
    says so: a remembered refusal is repeated for ``refusal_ttl`` at most, then the
    row is read again and the free slot taken."""
    async with opened(store(lease=LEASE, heartbeat_interval=0.2), f"a-{unique}") as a, \
            opened(store(lease=LEASE, heartbeat_interval=0.2), f"b-{unique}") as b:
        x, y = same_slot(a, unique, 2)
        await a.claim(x)
        await judged_alive(b, f"a-{unique}")
        assert b._slots is not None and a._slots is not None
        b._slots.refusal_ttl = 3600.0
        with pytest.raises(NotOwner):
            await b.claim(x)
        await a._slots.release_all(f"a-{unique}")  # a lives on, its slot is free
        rec = record(b)
        with pytest.raises(NotOwner):  # from memory: no request
            await b.claim(y)
        assert rec.queries == []
        b._slots.refusal_ttl = 0.0  # the refusal is out of date
        taken = await b.claim(y)
        assert taken.node_id == f"b-{unique}"
        assert rec.queries[:2] == ["slot_get", "slot_take"]


async def test_a_closed_peers_slot_is_taken_after_one_listing(unique: str) -> None:
    """A refusal from memory holds only while the listing of nodes judges the holder
    alive: once a peer closes (its slots given back, its row deleted), the next
    listing forgets it, whatever the refusal's age."""
    a = store(lease=LEASE, heartbeat_interval=0.2)
    await a.open(f"a-{unique}")
    try:
        async with opened(store(lease=LEASE, heartbeat_interval=None), f"b-{unique}") as b:
            x, y = same_slot(a, unique, 2)
            await a.claim(x)
            await judged_alive(b, f"a-{unique}")
            assert b._slots is not None
            b._slots.refusal_ttl = 3600.0
            with pytest.raises(NotOwner):
                await b.claim(x)
            await a.close()
            await b.nodes()  # a's row is gone from this listing
            assert b.peer_state(f"a-{unique}") is None
            taken = await b.claim(y)
            assert taken.node_id == f"b-{unique}"
    finally:
        await a.close()


async def test_a_clean_release_passes_the_slot_on_without_fences(unique: str) -> None:
    a = store()
    await a.open(f"a-{unique}")
    x, y = same_slot(a, unique, 2)
    c = await a.claim(x)
    await a.commit(c, [("kv", "k", b"1")])
    await a.close()  # every commit answered: the slot is released clean
    async with opened(store(), f"b-{unique}") as b:
        rec = record(b)
        cb = await b.claim(x)  # taken from nobody: no peer to wait for
        assert cb.epoch >> 20 == (c.epoch >> 20) + 1
        assert await b.read(cb, "kv", "k") == b"1"
        assert rec.queries == ["slot_get", "slot_take", "read"]  # no per-actor fence
        assert await b.owner_of(y) == (f"b-{unique}", cb.epoch >> 20 << 20)


async def test_a_dead_holders_slots_are_taken_on_a_few_shared_reads_of_its_row(
    unique: str,
) -> None:
    """A failover takes every slot of the dead node at once. Each take must read the
    holder's node row after the slot's row (a woken holder may have taken the slot
    again), but a read sent after several of them answers them all: a read per
    slot was 1,024 reads of one row, half a second of the survivor's loop."""
    a_id, b_id = f"a-{unique}", f"b-{unique}"
    async with opened(store(lease=LEASE, heartbeat_interval=0.2), a_id) as a, \
            opened(store(lease=LEASE, heartbeat_interval=0.2), b_id) as b:
        actors = one_per_slot(a, unique, 30)
        for actor in actors:
            await a.claim(actor)
        await judged_alive(b, a_id)
        a._beat_task.cancel()  # type: ignore[union-attr]
        deadline = time.monotonic() + 10 * LEASE
        while b.peer_state(a_id) != DEAD:
            assert time.monotonic() < deadline, "a never judged dead"
            await b.nodes()
            await asyncio.sleep(0.1)
        rec = record(b)
        claims = await asyncio.gather(*(b.claim(actor) for actor in actors))
        assert {c.node_id for c in claims} == {b_id}
        assert b._st is not None
        reads = sum(1 for q in rec.sent if q is b._st.node_get)
        # the slot rows' answers come over a spell: the reads they wait for follow
        # one another, each shared by every take that asked while one ran
        assert 1 <= reads <= 10, reads
        assert rec.queries.count("slot_take") == 30


GUESS_KEYSPACE = f"{CQL_KEYSPACE}_sguess"[:48]  # these tests' own: no other test's holders


async def test_a_burst_of_takes_guesses_from_one_listing_of_the_slots(unique: str) -> None:
    """A fresh node takes every slot it is asked for, a survivor all of a dead peer's,
    at once: a read of each slot's row before its LWT was half of the requests
    (1,024 more). Takes that ask together share one listing of every slot's row,
    and its guesses must be right: a live peer's slots are refused with no LWT,
    free ones taken on the first LWT."""
    a_id, b_id = f"a-{unique}", f"b-{unique}"
    async with opened(store(GUESS_KEYSPACE, lease=LEASE, heartbeat_interval=0.2), a_id) as a, \
            opened(store(GUESS_KEYSPACE, lease=LEASE, heartbeat_interval=0.2), b_id) as b:
        actors = one_per_slot(a, unique, 40)
        for actor in actors[:5]:
            await a.claim(actor)
        await judged_alive(b, a_id)
        rec = record(b)
        got = await asyncio.gather(*(b.claim(actor) for actor in actors), return_exceptions=True)
        refused = [g for g in got[:5] if isinstance(g, NotOwner)]
        assert [g.owner for g in refused] == [a_id] * 5, got[:5]
        assert all(not isinstance(g, BaseException) and g.node_id == b_id for g in got[5:]), got
        assert rec.queries.count("slot_get") == 0
        assert 1 <= rec.queries.count("slot_all") <= 3, rec.queries
        assert rec.queries.count("slot_take") == 35  # every guess right: no second LWT
        # a lone take later still reads just its own row
        del rec.sent[:]
        late = one_per_slot(a, unique, 41)[40]
        assert (await b.claim(late)).node_id == b_id
        assert rec.queries == ["slot_get", "slot_take"]


async def test_takes_whose_shared_listing_fails_read_their_own_rows(unique: str) -> None:
    """The listing is only a shortcut: when it fails, each take reads its own row and
    goes on, so a burst fails no activation that the one-by-one reads would not."""
    from cassandra import OperationTimedOut

    async with opened(store(GUESS_KEYSPACE), f"c-{unique}") as c:
        rec = record(c)
        assert c._st is not None
        listing = c._st.slot_all
        inner_run = rec.run

        def run(query: Any, params: Any = None, *args: Any, **kw: Any) -> asyncio.Future[Any]:
            if query is listing:
                rec.sent.append(query)
                fut: asyncio.Future[Any] = rec.loop.create_future()
                rec.loop.call_soon(fut.set_exception, OperationTimedOut("listing lost (test)"))
                return fut
            return inner_run(query, params, *args, **kw)

        rec.run = run  # type: ignore[method-assign]
        actors = one_per_slot(c, unique, 20)
        claims = await asyncio.gather(*(c.claim(actor) for actor in actors))
        assert {cl.node_id for cl in claims} == {f"c-{unique}"}
        assert rec.queries.count("slot_all") >= 1
        assert rec.queries.count("slot_get") == 20
        assert rec.queries.count("slot_take") == 20


async def test_an_unclean_takeover_fences_each_actor_before_its_first_read(
    unique: str,
) -> None:
    """A holds the slot and stops heartbeating (paused); its commit of x is in
    flight across the takeover. B reads only after a fence LWT: the late commit is
    refused, never visible after B answered. An actor B has not touched yet still
    takes A's late commit, and B's first read of it (after its fence) sees it."""
    a = store(lease=LEASE, heartbeat_interval=None)
    await a.open(f"a-{unique}")
    try:
        x, y = same_slot(a, unique, 2)
        ca, cy = await a.claim(x), await a.claim(y)
        await a.commit(ca, [("kv", "v", b"1")])
        rec_a = record(a)
        rec_a.hold = True  # A's next commit of x is stuck on its way
        with pytest.raises(CommitUnknown):
            await a.commit(ca, [("kv", "v", b"late")])
        rec_a.hold = False
        async with opened(store(lease=LEASE, heartbeat_interval=0.2), f"b-{unique}") as b:
            cb = await until_taken(b, x, 6 * LEASE)
            rec_b = record(b)
            assert await b.read(cb, "kv", "v") == b"1"
            assert rec_b.queries == ["slot_fence", "read"]  # the fence came first
            # y: untouched by B, so a commit of A still lands there (A has not learnt
            # that its slot passed on); B's fence of y comes after it and sees it
            await a.commit(cy, [("kv", "v", b"a-wrote")])
            (late,) = await rec_a.release()  # A's stuck commit of x lands now: refused
            assert not late[0]["[applied]"]
            assert await b.read(cb, "kv", "v") == b"1"
            with pytest.raises(StaleEpoch):  # and so is anything A sends later,
                await a.commit(ca, [("kv", "v", b"later")])
            with pytest.raises(StaleEpoch):  # which taught A that the slot passed on
                await a.commit(cy, [("kv", "v", b"after")])
            cby = await b.claim(y)
            assert await b.read(cby, "kv", "v") == b"a-wrote"
            await b.commit(cby, [("kv", "v", b"b-wrote")])
            assert await b.read(cby, "kv", "v") == b"b-wrote"
    finally:
        await a.close()


async def test_a_reclaim_after_an_unknown_commit_fences_before_it_reads(unique: str) -> None:
    """The same node: an activation's commit ends unknown (it may still land) and a
    fresh activation of the actor takes over. Its first read is a fence, so the
    old commit can never become visible after the new activation answered."""
    async with opened(store(resolve_timeout=0.3), f"a-{unique}") as s:
        (x,) = same_slot(s, unique, 1)
        c1 = await s.claim(x)
        await s.commit(c1, [("kv", "v", b"1")])
        rec = record(s)
        rec.hold = True
        with pytest.raises(CommitUnknown):
            await s.commit(c1, [("kv", "v", b"unknown")])
        rec.hold = False
        c2 = await s.claim(x)  # the restart from storage
        assert c2.epoch > c1.epoch
        assert await s.read(c2, "kv", "v") == b"1"
        assert rec.queries[-2:] == ["slot_fence", "read"]
        (late,) = await rec.release()
        assert not late[0]["[applied]"]
        assert await s.read(c2, "kv", "v") == b"1"
        with pytest.raises(StaleEpoch):  # refused here, before any request
            await s.commit(c1, [("kv", "v", b"old")])


async def test_a_keyspace_never_mixes_activation_modes(unique: str) -> None:
    async with opened(ScyllaStore(CQL_HOSTS.split(","), CQL_KEYSPACE), f"z-{unique}"):
        pass  # the per-actor keyspace of the other tests is marked so
    async with opened(store(), f"a-{unique}"):
        with pytest.raises(StoreError, match="activation=slots"):
            async with opened(ScyllaStore(CQL_HOSTS.split(","), KEYSPACE), f"b-{unique}"):
                pass
    with pytest.raises(StoreError, match="activation=actor"):
        async with opened(ScyllaStore(CQL_HOSTS.split(","), CQL_KEYSPACE, activation="slots"),
                          f"c-{unique}"):
            pass


async def test_a_lapsed_lease_drops_every_slot(unique: str) -> None:
    async with opened(store(lease=LEASE, heartbeat_interval=None), f"a-{unique}") as s:
        (x,) = same_slot(s, unique, 1)
        c1 = await s.claim(x)
        assert s._slots is not None and s._slots.held
        now = asyncio.get_running_loop().time()
        s._beat_succeeded(now, now + LEASE + 1)  # a heartbeat answered after a pause
        assert not s._slots.held
        with pytest.raises(StaleEpoch):
            await s.commit(c1, [("kv", "v", b"x")])
        c2 = await s.claim(x)  # taken anew from ourselves: dirty, so fenced first
        assert c2.epoch >> 20 == (c1.epoch >> 20) + 1
        rec = record(s)
        assert await s.read(c2, "kv", "v") is None
        assert rec.queries[0] in ("slot_fence", "slot_fence_new")

"""The Store contract (dna/store/base.py) that every backend passes.

Runs once per store kind: the in-process MemoryStore, a real SQLite file, and
a real CQL server when DNA_CQL_HOSTS names one. Written only against the
Store API: names come from ``unique`` because CQL runs share a keyspace, and
``store_factory()`` gives another client (another node) on the same data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from tests.conftest import opened

from dna.errors import NotOwner, StaleEpoch
from dna.store import ActorId, Store

Factory = Callable[[], Any]


def actor(unique: str, key: str = "a", type_name: str = "Thing") -> ActorId:
    return ActorId(f"ns-{unique}", type_name, key)


async def test_first_claim_has_epoch_one(store_factory: Factory, unique: str) -> None:
    node = f"a-{unique}"
    async with opened(store_factory(), node) as s:
        assert isinstance(s, Store)
        aid = actor(unique)
        assert await s.owner_of(aid) == (None, 0)
        c = await s.claim(aid)
        assert (c.actor, c.node_id, c.epoch) == (aid, node, 1)
        assert await s.owner_of(aid) == (node, 1)


async def test_reclaim_by_same_node_grows_epoch_and_fences_old(
    store_factory: Factory, unique: str
) -> None:
    async with opened(store_factory()) as s:
        aid = actor(unique)
        c1 = await s.claim(aid)
        c2 = await s.claim(aid)
        assert c2.epoch == c1.epoch + 1
        with pytest.raises(StaleEpoch):
            await s.commit(c1, [("kv", "x", b"old")])
        assert await s.read(c2, "kv", "x") is None
        await s.commit(c2, [("kv", "x", b"new")])
        assert await s.read(c2, "kv", "x") == b"new"


async def test_live_owner_refuses_other_node_until_closed(
    store_factory: Factory, unique: str
) -> None:
    aid = actor(unique)
    a_id, b_id = f"a-{unique}", f"b-{unique}"
    a = store_factory()
    await a.open(a_id)
    try:
        ca = await a.claim(aid)
        await a.commit(ca, [("kv", "k", b"from a")])
        async with opened(store_factory(), b_id) as b:
            with pytest.raises(NotOwner) as info:
                await b.claim(aid)
            assert info.value.owner == a_id
            assert (await b.owner_of(aid))[0] == a_id
            await a.close()  # the contract: a closed node's actors may be claimed
            cb = await b.claim(aid)
            assert cb.epoch > ca.epoch
            assert await b.owner_of(aid) == (b_id, cb.epoch)
            assert await b.read(cb, "kv", "k") == b"from a"
            # a's claim is stale for every client, whoever presents it
            with pytest.raises(StaleEpoch):
                await b.commit(ca, [("kv", "k", b"stale")])
            assert await b.read(cb, "kv", "k") == b"from a"
    finally:
        await a.close()


async def test_stale_commit_applies_nothing(store_factory: Factory, unique: str) -> None:
    async with opened(store_factory()) as s:
        aid = actor(unique)
        old = await s.claim(aid)
        await s.commit(old, [("kv", "keep", b"1")])
        new = await s.claim(aid)
        rows = [("kv", "keep", None), ("kv", "x", b"2"), ("other", "y", b"3")]
        with pytest.raises(StaleEpoch):
            await s.commit(old, rows)
        with pytest.raises(StaleEpoch):
            await s.commit(old, [])
        assert await s.read(new, "kv", "keep") == b"1"
        assert await s.read(new, "kv", "x") is None
        assert await s.list(new, "other") == []


async def test_commit_is_atomic_and_visible_on_return(store_factory: Factory, unique: str) -> None:
    async with opened(store_factory()) as s:
        c = await s.claim(actor(unique))
        await s.commit(c, [("kv", f"k{i}", b"v%d" % i) for i in range(100)] + [("m2", "z", b"z")])
        assert await s.read(c, "kv", "k42") == b"v42"
        assert await s.read(c, "m2", "z") == b"z"
        await s.commit(c, [("kv", "k1", b"changed"), ("kv", "k2", None), ("kv", "new", b"n")])
        assert await s.read(c, "kv", "k1") == b"changed"
        assert await s.read(c, "kv", "k2") is None
        assert await s.read(c, "kv", "new") == b"n"
        await s.commit(c, [])  # an empty commit of a current claim is fine
        # within one commit the last write of a key wins
        await s.commit(
            c, [("kv", "w", b"1"), ("kv", "w", None), ("kv", "d", b"1"), ("kv", "d", None)]
        )
        await s.commit(c, [("kv", "w", b"2")])
        await s.commit(c, [("kv", "w", None), ("kv", "w", b"3")])
        assert await s.read(c, "kv", "w") == b"3"
        assert await s.read(c, "kv", "d") is None


async def test_values_are_bytes_kept_exactly(store_factory: Factory, unique: str) -> None:
    async with opened(store_factory()) as s:
        c = await s.claim(actor(unique))
        values = {"empty": b"", "zeros": b"\x00\x00\x01", "big": bytes(range(256)) * 400}
        await s.commit(c, [("kv", k, v) for k, v in values.items()])
        for k, v in values.items():
            assert await s.read(c, "kv", k) == v


async def test_read_missing_is_none(store_factory: Factory, unique: str) -> None:
    async with opened(store_factory()) as s:
        c = await s.claim(actor(unique))
        assert await s.read(c, "kv", "nope") is None
        await s.commit(c, [("kv", "yes", b"1")])
        assert await s.read(c, "kv", "nope") is None
        assert await s.read(c, "other-module", "yes") is None
        assert await s.list(c, "other-module") == []


async def test_list_by_prefix_in_key_order(store_factory: Factory, unique: str) -> None:
    keys = [f"a/{i}" for i in range(12)] + ["a", "a0", "b/1", "a/z", "a/\u00e9", "a/\U0001f600"]
    async with opened(store_factory()) as s:
        c = await s.claim(actor(unique))
        await s.commit(c, [("kv", k, k.encode()) for k in keys] + [("x", "a/q", b"")])
        expected = sorted(k for k in keys if k.startswith("a/"))  # code point order
        got = await s.list(c, "kv", "a/", limit=1000)
        assert got == [(k, k.encode()) for k in expected]
        assert [k for k, _ in await s.list(c, "kv", "a/", limit=3)] == expected[:3]
        assert [k for k, _ in await s.list(c, "kv", limit=1000)] == sorted(keys)
        assert await s.list(c, "kv", "a/", limit=0) == []
        assert await s.list(c, "kv", "zzz") == []
        # paging with start_after walks every key exactly once
        seen: list[str] = []
        after = None
        while True:
            page = await s.list(c, "kv", "a/", limit=5, start_after=after)
            if not page:
                break
            seen += [k for k, _ in page]
            after = page[-1][0]
        assert seen == expected
        # start_after need not be a stored key; below the prefix it changes nothing
        assert [k for k, _ in await s.list(c, "kv", "a/", limit=2, start_after="a/10a")] == [
            "a/11", "a/2"
        ]
        assert await s.list(c, "kv", "a/", limit=3, start_after="a") == got[:3]
        assert await s.list(c, "kv", "a/", start_after="b") == []


async def test_deletes_leave_the_list(store_factory: Factory, unique: str) -> None:
    async with opened(store_factory()) as s:
        c = await s.claim(actor(unique))
        await s.commit(c, [("kv", f"p{i}", b"v") for i in range(6)])
        await s.commit(c, [("kv", "p1", None), ("kv", "p4", None), ("kv", "never", None)])
        assert [k for k, _ in await s.list(c, "kv", "p")] == ["p0", "p2", "p3", "p5"]
        assert [k for k, _ in await s.list(c, "kv", "p", limit=2, start_after="p0")] == ["p2", "p3"]


async def test_actors_do_not_share_data(store_factory: Factory, unique: str) -> None:
    async with opened(store_factory()) as s:
        c1 = await s.claim(actor(unique, "one"))
        c2 = await s.claim(actor(unique, "two"))
        c3 = await s.claim(actor(unique, "one", type_name="Other"))
        await s.commit(c1, [("kv", "k", b"1")])
        await s.commit(c2, [("kv", "k", b"2")])
        assert await s.read(c1, "kv", "k") == b"1"
        assert await s.read(c2, "kv", "k") == b"2"
        assert await s.read(c3, "kv", "k") is None
        assert await s.list(c3, "kv") == []


async def test_release_then_claim_grows_epoch(store_factory: Factory, unique: str) -> None:
    aid = actor(unique)
    async with opened(store_factory(), f"a-{unique}") as a:
        c1 = await a.claim(aid)
        await a.commit(c1, [("kv", "k", b"v")])
        await a.release(c1)
        assert await a.owner_of(aid) == (None, c1.epoch)
        with pytest.raises(StaleEpoch):
            await a.commit(c1, [("kv", "k", b"after release")])
        async with opened(store_factory(), f"b-{unique}") as b:
            # released: another live node may take it at once
            cb = await b.claim(aid)
            assert cb.epoch == c1.epoch + 1
            assert await b.read(cb, "kv", "k") == b"v"
            with pytest.raises(StaleEpoch):
                await a.release(c1)  # a stale release is fenced and changes nothing
            assert await b.owner_of(aid) == (f"b-{unique}", cb.epoch)
            await b.release(cb)
        c3 = await a.claim(aid)
        assert c3.epoch == cb.epoch + 1


async def test_concurrent_claims_and_commits_one_stale(store_factory: Factory, unique: str) -> None:
    async with opened(store_factory()) as s:
        claims = await asyncio.gather(*(s.claim(actor(unique, f"k{i}")) for i in range(40)))
        assert all(c.epoch == 1 for c in claims)
        stale = claims[7]
        claims[7] = await s.claim(stale.actor)
        results = await asyncio.gather(
            *(s.commit(c, [("kv", "who", c.actor.key.encode())]) for c in claims),
            s.commit(stale, [("kv", "who", b"stale")]),
            return_exceptions=True,
        )
        assert results[:-1] == [None] * len(claims)
        assert isinstance(results[-1], StaleEpoch)
        for c in claims:
            assert await s.read(c, "kv", "who") == c.actor.key.encode()


async def test_data_survives_reopen(store_factory: Factory, store_kind: str, unique: str) -> None:
    if store_kind == "memory":
        pytest.skip("MemoryStore is not durable by design")
    aid = actor(unique)
    async with opened(store_factory(), f"a-{unique}") as a:
        c = await a.claim(aid)
        await a.commit(c, [("kv", f"k{i}", b"%d" % i) for i in range(500)])
    async with opened(store_factory(), f"b-{unique}") as b:
        c2 = await b.claim(aid)
        assert c2.epoch > c.epoch
        assert len(await b.list(c2, "kv", limit=1000)) == 500
        assert await b.read(c2, "kv", "k499") == b"499"


async def test_nodes_lists_open_node(store_factory: Factory, unique: str) -> None:
    node = f"a-{unique}"
    async with opened(store_factory(), node) as s:
        mine = [n for n in await s.nodes() if n.node_id == node]
        assert len(mine) == 1
        assert mine[0].alive in (True, None)
        assert not mine[0].draining


# ---------------------------------------------------------------- the declared contract


async def test_every_capability_is_declared_with_a_sound_value(
    store_factory: Factory, store_kind: str, unique: str
) -> None:
    s = store_factory()
    assert s.kind == store_kind.split("-")[0]  # sqlite-log: a SQLite store
    assert s.lease is None or s.lease > 0
    assert s.heartbeat_interval is None or (s.lease is not None and s.heartbeat_interval > 0)
    for limit in (s.max_key_bytes, s.max_value_bytes, s.max_commit_bytes):
        assert limit is None or limit > 0
    node = f"a-{unique}"
    async with opened(s, node):
        loop = asyncio.get_running_loop()
        if s.lease is None:  # liveness by lock: no lease to judge
            assert s.last_heartbeat is None
        else:  # registering counts as the first heartbeat, sent before now
            assert s.last_heartbeat is not None and s.last_heartbeat <= loop.time()
        assert s.lease_term == 0
        await s.heartbeat(7)
        await s.heartbeat()
        await s.set_draining(True)
        mine = {n.node_id: n for n in await s.nodes()}[node]
        assert (mine.alive, mine.state, mine.draining, mine.load) == (True, "alive", True, 7)
        await s.set_draining(False)
        assert not {n.node_id: n for n in await s.nodes()}[node].draining


def test_check_row_refuses_what_the_store_could_never_commit(
    store_factory: Factory, store_kind: str
) -> None:
    from dna.errors import TooLarge

    s = store_factory()
    s.check_row("kv", "k", b"v")
    s.check_row("kv", "k", None)
    with pytest.raises(TypeError, match="must be str"):
        s.check_row("kv", 1, b"v")
    with pytest.raises(TypeError, match="bytes or None"):
        s.check_row("kv", "k", "text")
    with pytest.raises(ValueError, match="not valid text"):
        s.check_row("kv", "bad\ud800", b"v")
    if s.max_key_bytes is not None:
        s.check_row("kv", "k" * s.max_key_bytes, None)
        with pytest.raises(TooLarge, match=f"limit of {s.max_key_bytes}"):
            s.check_row("kv", "é" * s.max_key_bytes, None)  # 2 bytes a character
    if s.max_value_bytes is not None:
        with pytest.raises(TooLarge, match=f"{s.max_value_bytes + 1} bytes"):
            s.check_row("kv", "k", memoryview(bytearray(s.max_value_bytes + 1)))
    if store_kind != "memory":  # the real databases have limits
        assert s.max_key_bytes == 65_535 and s.max_value_bytes is not None


def test_a_store_missing_part_of_the_contract_cannot_be_made() -> None:
    class Partial(Store):  # everything but the node-facing half
        async def open(self, node_id: str, address: str = "") -> None: ...
        async def close(self) -> None: ...
        async def claim(self, actor: ActorId) -> Any: ...
        async def release(self, claim: Any) -> None: ...
        async def commit(self, claim: Any, rows: Any) -> None: ...
        async def read(self, claim: Any, module: str, key: str) -> Any: ...
        async def list(self, claim: Any, module: str, prefix: str = "", limit: int = 100,
                       start_after: str | None = None) -> Any: ...

    with pytest.raises(TypeError, match="nodes") as info:
        Partial()  # type: ignore[abstract]
    for name in ("owner_of", "set_draining"):
        assert name in str(info.value)

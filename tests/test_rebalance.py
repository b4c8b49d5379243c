"""Placement weights and rebalancing: the placement function and the plan checked
deterministically, then real `dna node` processes sharing a SQLite file: weighted
placement from a client, and a fourth node joining three under steady calls."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from tests.conftest import CQL_HOSTS, NO_CQL_REASON

import dna
from dna._placement import node_weight, place, with_weight
from dna._rebalance import plan_moves
from dna.examples import KVActor
from dna.store import open_store

BENCH = Path(__file__).resolve().parent.parent / "bench" / "rebalance.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_rebalance", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_rebalance"] = mod
    spec.loader.exec_module(mod)
    return mod


def names(n: int, prefix: str = "k") -> list[dna.ActorId]:
    return [dna.ActorId("default", "T", f"{prefix}{i}") for i in range(n)]


# ---------------------------------------------------------------- placement, pure


def test_a_weight_travels_in_the_node_id() -> None:
    assert with_weight("abc-18c", 1) == "abc-18c"
    assert node_weight("abc-18c") == 1.0
    assert node_weight(with_weight("abc-18c", 2.5)) == 2.5
    assert node_weight("abc-18c-wx") == 1.0  # malformed: the default
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            with_weight("abc", bad)


def test_weighted_rendezvous_gives_each_node_its_weighted_share() -> None:
    nodes = [with_weight("a-1", 1), with_weight("b-1", 1), with_weight("c-1", 2),
             with_weight("d-1", 4)]
    counts = dict.fromkeys(nodes, 0)
    n = 40_000
    for aid in names(n):
        pick = place(aid, nodes)
        assert pick is not None
        counts[pick] += 1
    for node, want in zip(nodes, (1 / 8, 1 / 8, 2 / 8, 4 / 8), strict=True):
        assert abs(counts[node] / n - want) < 0.01, counts


def test_a_node_leaving_moves_only_its_own_names() -> None:
    nodes = ["a-1", with_weight("b-1", 3), "c-1"]
    before = {aid: place(aid, nodes) for aid in names(5000)}
    after = {aid: place(aid, nodes[:2]) for aid in before}
    moved = [aid for aid in before if before[aid] != after[aid]]
    assert moved and all(before[aid] == "c-1" for aid in moved)
    assert sum(1 for v in before.values() if v == "c-1") == len(moved)


# ---------------------------------------------------------------- the plan, pure


def test_three_full_nodes_each_shed_a_quarter_to_a_new_one() -> None:
    loads = {"a": 1000, "b": 1000, "c": 1000, "d": 0}
    for me in "abc":
        mine = names(1000, me)
        plan = plan_moves(me, mine, loads, limit=10_000)
        assert len(plan) == 250 and {t for _, t in plan} == {"d"}
        assert len({aid for aid, _ in plan}) == 250 and all(aid in mine for aid, _ in plan)
    assert plan_moves("d", [], loads, limit=10_000) == []


def test_the_plan_respects_its_limit_tolerance_and_weights() -> None:
    assert len(plan_moves("a", names(1000), {"a": 1000, "b": 0}, limit=30)) == 30
    # many actors, few moves: the plan still finds them (it scans a bounded prefix)
    many = plan_moves("a", names(100_000), {"a": 100_000, "b": 0, "c": 0}, limit=10)
    assert len(many) == 10 and {t for _, t in many} <= {"b", "c"}
    # within the tolerance: nothing moves
    assert plan_moves("a", names(505), {"a": 505, "b": 495}, limit=100) == []
    # b weighs 3: a's share of 1000 is 250
    heavy = with_weight("b", 3)
    plan = plan_moves("a", names(1000), {"a": 1000, heavy: 0}, limit=10_000)
    assert len(plan) == 750 and {t for _, t in plan} == {heavy}
    # two peers below their share: neither filled past it
    plan = plan_moves("a", names(900), {"a": 900, "b": 0, "c": 300}, limit=10_000)
    to = [t for _, t in plan]
    assert to.count("b") == 400 and to.count("c") == 100


def test_names_go_first_where_rendezvous_places_them() -> None:
    loads = {"a": 1000, "b": 1000, "c": 1000, "d": 0}
    mine = names(1000, "a")
    plan = plan_moves("a", mine, loads, limit=10_000)
    winners = {aid for aid in mine if place(aid, list(loads)) == "d"}
    assert {aid for aid, _ in plan} <= winners or winners <= {aid for aid, _ in plan}


# ---------------------------------------------------------------- real processes


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    f = tmp_path / "secret"
    f.write_text(secrets.token_hex(16))
    os.chmod(f, 0o600)
    return f


async def test_a_client_places_names_by_weight_over_real_nodes(
    tmp_path: Path, secret_file: Path
) -> None:
    b = bench()
    store = f"sqlite://{tmp_path}/weights.db"
    secret = secret_file.read_bytes()  # noqa: ASYNC240 (before anything runs)
    procs = [b.start_node(store, secret_file, 0.0, w) for w in (1.0, 3.0)]
    try:
        client = dna.Node(store=open_store(store), listen="127.0.0.1:0",
                          secret=secret, host_actors=False)
        async with client:
            await client.cluster.refresh_peers()
            n = 400
            await asyncio.gather(*(client.ref(KVActor, f"w-{i}").put("k", i)
                                   for i in range(n)))
            by_weight: dict[float, int] = {}
            for rec in await client.store.nodes():
                owned = 0
                for i in range(n):
                    aid = dna.ActorId("default", KVActor.type_name, f"w-{i}")
                    owner, _ = await client.store.owner_of(aid)
                    owned += owner == rec.node_id
                if not rec.draining:
                    by_weight[node_weight(rec.node_id)] = owned
    finally:
        for p in procs:
            b.stop_node(p)
    assert sum(by_weight.values()) == n, by_weight
    assert abs(by_weight[3.0] / n - 0.75) < 0.07, by_weight


@pytest.fixture(params=["sqlite", pytest.param("cql", marks=pytest.mark.cql)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[str]:
    """A fresh store: a SQLite file, or a CQL keyspace of its own (dropped after), so no
    other test's nodes are in its nodes table."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/rebalance.db"
        return
    if not CQL_HOSTS:
        pytest.skip(NO_CQL_REASON)
    keyspace = "dna_rb_" + "".join(c for c in unique if c.isalnum())[:30]
    yield f"cql://{CQL_HOSTS}/{keyspace}"
    from cassandra.cluster import Cluster

    host, _, port = CQL_HOSTS.split(",")[0].partition(":")
    cluster = Cluster([host], port=int(port or 9042))
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
    finally:
        cluster.shutdown()


@pytest.mark.timeout(300)
async def test_a_fourth_node_gets_a_quarter_under_steady_calls(
    store_url: str, secret_file: Path
) -> None:
    """3 nodes, 3,000 actors under steady puts, a 4th node starts: within 60 s every
    node holds 25% +- 5% of the activations; calls failed only retryably (and were
    retried); every acknowledged put reads back."""
    out = await bench().run(store_url, secret_file,
                            actors=3000, nodes=3, rate=100.0, workers=48, within=60.0)
    assert out["balanced"], out
    assert min(out["loads_after"]) > 0
    assert out["n_failed"] == 0, out["failed"]
    assert out["calls_during_move"] > 0
    assert out["acked"] > 3000 and out["n_missing"] == 0, out["missing"]


async def test_an_actor_handed_back_is_claimed_where_it_returns(unique: str) -> None:
    """A hands an actor to B, later B hands it back: B's "claim it now" closes A's stale
    route to B and A claims the actor at once; without that, calls bounce between the
    two routes until the hop limit."""
    a, b = (dna.Node(store=dna.MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s")
            for _ in range(2))
    for n in (a, b):
        await n.start()
    try:
        for n in (a, b):
            await n.cluster.refresh_peers()
        rec = {r.node_id: r for r in a.cluster.peers}
        ref = a.ref(KVActor, "moving")
        assert await ref.put("k", 1) == "ok"
        aid = ref.actor_id
        assert await a.hand_over(a.local_activations()[0], rec[b.node_id])
        # through A: the call follows A's "claim it now" frame to B on one connection
        assert await ref.get("k") == 1
        assert type(b.route_of(aid)).__name__ == "Activation"
        assert await b.hand_over(b.local_activations()[0], rec[a.node_id])
        # through B: the call follows B's "claim it now" frame to A on one connection
        assert await b.ref(KVActor, "moving").put("k", 2) == "ok"
        assert type(a.route_of(aid)).__name__ == "Activation", a.route_of(aid)
        assert await ref.get("k") == 2
        assert a.stats.handovers == b.stats.handovers == 1
    finally:
        for n in (a, b):
            await n.stop()

"""A node's peer list is re-read once for a burst of dropped routes, not once each,
and again before a call is refused because the list judged its live owner dead."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import dna
from dna.examples import KVActor
from dna.store import ActorId
from dna.store.base import DEAD
from dna.store.memory import MemoryStore


async def test_a_burst_of_dropped_routes_reads_the_node_list_at_most_twice() -> None:
    """A failover drops every route to the dead node at once (100k in the failover
    bench): each used to spawn its own read of the node list, and the client spent
    60% of its loop in them (py-spy) while the survivor idled."""
    async with dna.Node(store=MemoryStore(), listen="127.0.0.1:0", secret=b"s" * 32) as node:
        reads = 0
        gate = asyncio.Event()
        real = node.store.nodes

        async def nodes() -> Any:
            nonlocal reads
            reads += 1
            await gate.wait()
            return await real()

        node.store.nodes = nodes  # type: ignore[method-assign]
        routes = [SimpleNamespace(aid=ActorId("default", "t", str(i)), inbox=[])
                  for i in range(1000)]
        for r in routes[:500]:
            node.cluster.drop_route(r)  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the read starts (and waits on the gate)
        assert reads == 1  # one read under way for the whole burst
        for r in routes[500:]:  # dropped while it runs: one more read, after it
            node.cluster.drop_route(r)  # type: ignore[arg-type]
        gate.set()
        assert node.cluster.refreshing is not None
        await node.cluster.refreshing
        assert reads == 2
        node.cluster.drop_route(routes[0])  # type: ignore[arg-type]  # later: a fresh read
        assert node.cluster.refreshing is not None
        await node.cluster.refreshing
        assert reads == 3 and node.cluster.refreshing is None


async def test_a_live_owner_that_a_stale_list_calls_dead_still_gets_the_call(
    unique: str,
) -> None:
    """The store finds a name held by a live peer while this node's last listing of
    nodes judged that peer dead (a listing read before this process was paused, its
    answer judged after it woke). The call must be forwarded to the owner, not fail
    with ``NotOwner``; a burst of such calls reads the node list again once or twice,
    not once each."""
    a = dna.Node(store=MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s" * 32)
    b = dna.Node(store=MemoryStore(name=unique), listen="127.0.0.1:0", secret=b"s" * 32)
    async with a, b:
        keys = [f"k{i}" for i in range(200)]
        for key in keys:  # a holds them all
            assert await a.ref(KVActor, key).put("x", key) == "ok"
        await b.cluster.refresh_peers()
        assert any(rec.node_id == a.node_id and rec.alive for rec in b.cluster.peers)
        reads = 0
        real = b.store.nodes

        async def nodes() -> Any:
            nonlocal reads
            reads += 1
            return await real()

        b.store.nodes = nodes  # type: ignore[method-assign]
        b.cluster.peers = [  # the stale judgement
            replace(rec, alive=False, state=DEAD) if rec.node_id == a.node_id else rec
            for rec in b.cluster.peers
        ]
        got = await asyncio.gather(*(b.ref(KVActor, key).get("x") for key in keys),
                                   return_exceptions=True)
        assert got == keys
        assert (a.activations, b.activations) == (200, 0)
        assert 1 <= reads <= 3  # one or two, and the node's own tick may add one

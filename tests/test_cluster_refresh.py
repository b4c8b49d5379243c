"""A node's peer list is re-read once for a burst of dropped routes, not once each."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import dna
from dna.store import ActorId
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

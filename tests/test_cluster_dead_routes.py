"""Routes to a node known dead are dropped at once: a failover costs no failed try
per actor.

The failover bench (100k actors, one client) showed every actor's first call after
the lease still going to the killed node: about one failed try per actor, each
waiting for a refused connection, bounded the whole failover at ~5k answers/s.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
from tests.cluster_driver import make_store
from tests.conftest import CQL_HOSTS, CQL_KEYSPACE, NO_CQL_REASON
from tests.test_cluster import LEASE, SECRET, Proc

import dna
from dna.activation import Activation
from dna.examples import KVActor

N = 40


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("cql", marks=pytest.mark.cql),
                                  pytest.param("cql-slots", marks=pytest.mark.cql)])
async def test_once_a_client_sees_a_node_dead_no_call_goes_to_it(
    tmp_path: Path, kind: str, unique: str
) -> None:
    spec: dict[str, Any]
    if kind == "sqlite":
        spec = {"kind": "sqlite", "path": str(tmp_path / "cluster.db"), "commit": "apply"}
    else:
        if not CQL_HOSTS:
            pytest.skip(NO_CQL_REASON)
        keyspace = f"{CQL_KEYSPACE}_slots"[:48] if kind == "cql-slots" else CQL_KEYSPACE
        spec = {"kind": "cql", "hosts": CQL_HOSTS.split(","), "keyspace": keyspace,
                "lease": LEASE, "heartbeat": 0.3,
                "activation": "slots" if kind == "cql-slots" else "actor"}
    victim = Proc(spec)
    try:
        keys = [f"dead-routes-{unique}-{i}" for i in range(N)]
        for i, key in enumerate(keys):  # every actor lives on the victim
            assert (await victim.aask(op="call", key=key, h="put", args=["k", i]))["ok"] == "ok"
        node = dna.Node(store=make_store(spec), listen="127.0.0.1:0", secret=SECRET.encode())
        async with node:
            await node.cluster.refresh_peers()
            refs = [node.ref(KVActor, key) for key in keys]
            # our claims find the live owner: the calls go there, over routes to it
            assert await asyncio.gather(*(ref.get("k") for ref in refs)) == list(range(N))
            assert {getattr(node.route_of(ref.actor_id), "owner", None)
                    for ref in refs} == {victim.node_id}
            victim.p.send_signal(signal.SIGKILL)
            victim.p.wait()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 4 * LEASE  # SQLite: the death is seen at once
            while True:  # CQL: once the victim's counter stood still for the lease
                await node.cluster.refresh_peers()
                if {r.node_id: r.alive for r in node.cluster.peers}[victim.node_id] is False:
                    break
                assert loop.time() < deadline
                await asyncio.sleep(0.2)
            owners = {getattr(node.route_of(ref.actor_id), "owner", None) for ref in refs}
            assert victim.node_id not in owners, owners
            # every kept ref answers on its first try, from a fresh activation here
            got = await asyncio.gather(*(ref.get.with_timeout(10.0)("k") for ref in refs))
            assert got == list(range(N))
            assert all(isinstance(node.route_of(ref.actor_id), Activation) for ref in refs)
    finally:
        victim.close()

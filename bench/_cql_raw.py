"""Raw driver figures: the ceiling DNA's CQL store is measured against.

``raw_fenced_ingest`` commits rows as fenced single-partition batches, the
way ``ScyllaStore.commit`` does, but straight through the driver from one
worker thread: no asyncio, no validation, keys encoded before the clock
starts. ``raw_claims`` runs first-claim LWTs of fresh actors, pipelined.
Benchmarks only (``bench/cql_ingest.py``, ``bench/activations.py``, and
``dna bench --store cql://... --ceiling``, which loads this file from a source
checkout): not part of the installed package. It reaches into the store's
private session and prepared statements on purpose, to measure the same
statements without the store's code.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cassandra.query import BatchStatement, BatchType

from dna.errors import StoreError
from dna.store import ActorId
from dna.store.cql._bridge import LWT

if TYPE_CHECKING:
    from dna.store.cql import ScyllaStore

__all__ = ["raw_claims", "raw_fenced_ingest", "store_claims", "store_fenced_ingest"]

VALUE = b"\xc4\x04test"  # msgpack of b"test": the seed bench's value


async def raw_fenced_ingest(
    hosts: Sequence[str], keyspace: str, n: int, batch_size: int, *, actors: int = 1
) -> float:
    """Rows/s of ``n`` rows as fenced batches of ``batch_size`` rows into ``actors``
    actors, one batch in flight per actor."""
    async with _opened(hosts, keyspace) as store:
        return await store_fenced_ingest(store, n, batch_size, actors=actors)


async def raw_claims(
    hosts: Sequence[str], keyspace: str, n: int, *, concurrency: int = 256
) -> float:
    """Claims/s of ``n`` first claims (LWT) of fresh actors, ``concurrency`` in flight."""
    async with _opened(hosts, keyspace) as store:
        return await store_claims(store, n, concurrency=concurrency)


class _opened:
    def __init__(self, hosts: Sequence[str], keyspace: str) -> None:
        from dna.store.cql import ScyllaStore

        self.store = ScyllaStore(hosts, keyspace, heartbeat_interval=None)

    async def __aenter__(self) -> ScyllaStore:
        await self.store.open(f"raw-{uuid.uuid4().hex[:12]}")
        return self.store

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()


async def store_fenced_ingest(
    store: ScyllaStore, n: int, batch_size: int, *, actors: int = 1
) -> float:
    """``raw_fenced_ingest`` on an open store's session."""
    if n <= 0 or batch_size <= 0 or actors <= 0:
        raise ValueError("n, batch_size and actors must be > 0")
    run = uuid.uuid4().hex[:12]
    claims = [
        await store.claim(ActorId("bench", "raw_ingest", f"{run}-{j}")) for j in range(actors)
    ]
    bridge, st, _ = store._open()
    keys = [str(i).encode() for i in range(n)]
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _ingest, bridge.session, st, claims, keys, batch_size)


def _ingest(session: Any, st: Any, claims: list[Any], keys: list[bytes], size: int) -> float:
    put, module = st.put.query_id, b"kv"
    pending: deque[Any] = deque()
    t0 = time.perf_counter()
    for i, start in enumerate(range(0, len(keys), size)):
        claim = claims[i % len(claims)]
        a = claim.actor
        batch = BatchStatement(BatchType.UNLOGGED)
        batch.add(
            st.fence, (claim.epoch, i, a.namespace, a.type_name, a.key, claim.node_id, claim.epoch)
        )
        ns, tn, ak = claim.handle
        batch._statements_and_parameters.extend(
            [(True, put, (VALUE, ns, tn, ak, module, k)) for k in keys[start : start + size]]
        )
        pending.append(session.execute_async(batch, execution_profile=LWT))
        if len(pending) >= len(claims):
            _applied(pending.popleft().result())
    while pending:
        _applied(pending.popleft().result())
    return len(keys) / (time.perf_counter() - t0)


async def store_claims(store: ScyllaStore, n: int, *, concurrency: int = 256) -> float:
    """``raw_claims`` on an open store's session."""
    if n <= 0 or concurrency <= 0:
        raise ValueError("n and concurrency must be > 0")
    bridge, st, me = store._open()
    run = uuid.uuid4().hex[:12]
    params = [
        (me, 1, int(time.time() * 1000), i, "bench", "raw_claim", f"{run}-{i}", None, None)
        for i in range(n)
    ]
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, _claims, bridge.session, st, params, concurrency)


def _claims(session: Any, st: Any, params: list[Any], concurrency: int) -> float:
    pending: deque[Any] = deque()
    t0 = time.perf_counter()
    for p in params:
        pending.append(session.execute_async(st.claim, p, execution_profile=LWT))
        if len(pending) >= concurrency:
            _applied(pending.popleft().result())
    while pending:
        _applied(pending.popleft().result())
    return len(params) / (time.perf_counter() - t0)


def _applied(rows: Any) -> None:
    if not rows or not rows[0]["[applied]"]:
        raise StoreError(f"raw benchmark write was not applied: {rows!r}")

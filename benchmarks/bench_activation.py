"""asv benchmarks of activation: the runtime's own cost (memory store), and the two
CQL activation paths (per-actor LWT claims vs slot leases) when ``DNA_CQL_HOSTS``
names a server (skipped otherwise). Keyspaces: ``$DNA_ASV_KEYSPACE`` (default
``dna_asv``) and the same name with ``_slots`` for the slot path."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable
from typing import Any

import dna
from dna._gc import DEFAULT_THRESHOLD
from dna.examples import Noop
from dna.store import open_store
from dna.store.memory import MemoryStore

_RUN = itertools.count()


def _activate(loop: asyncio.AbstractEventLoop, node: dna.Node, n: int, window: int) -> None:
    tag = f"{os.getpid()}-{next(_RUN)}-{id(node)}"
    names = iter(range(n))

    async def worker() -> None:
        for i in names:
            await node.ref(Noop, f"asv-{tag}-{i}").ping()

    async def go() -> None:
        await asyncio.gather(*(worker() for _ in range(window)))

    loop.run_until_complete(go())


def _passivate(loop: asyncio.AbstractEventLoop, node: dna.Node) -> None:
    """Passivate the activations ``_activate`` made, one after another."""

    async def go() -> None:
        for act in node.local_activations():
            if act.aid.key.startswith("asv-"):
                await act.passivate()

    loop.run_until_complete(go())


def _cyclic_garbage(run: Callable[[], None]) -> int:
    """Objects that only the cyclic collector could free, left behind by ``run()``."""
    import gc

    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run()
        gc.collect()
        return len(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


class MemoryActivations:
    """5,000 fresh activations (one call each) on the in-process store: the runtime's
    own cost, which bounds the CQL slot path; under the node's collector threshold
    (its default) and CPython's own (``gc_threshold=None``)."""

    params = ["node", "cpython"]
    param_names = ["gc"]

    def setup(self, gc: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.node = dna.Node(store=MemoryStore(),
                             gc_threshold=DEFAULT_THRESHOLD if gc == "node" else None)
        self.loop.run_until_complete(self.node.start())

    def teardown(self, gc: str) -> None:
        self.loop.run_until_complete(self.node.stop())
        self.loop.close()

    def time_activations(self, gc: str) -> None:
        _activate(self.loop, self.node, 5_000, 1_000)


class _WarmMemoryNode:
    """A node on the in-process store whose own objects (made once) exist already."""

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.node = dna.Node(store=MemoryStore())
        self.loop.run_until_complete(self.node.start())
        _activate(self.loop, self.node, 10, 10)

    def teardown(self) -> None:
        self.loop.run_until_complete(self.node.stop())
        self.loop.close()


class TrackedObjects(_WarmMemoryNode):
    """Objects the cyclic collector traces per live activation (memory store, 2,000
    activations settled): each is traced by a young, a middle and then full
    collections, which bounds a burst of activations. 18.0 before the shared empty
    containers of 2026-12-03, 13.0 after."""

    unit = "objects"


    def track_tracked_objects_per_activation(self) -> float:
        import gc

        n = 2_000
        gc.collect()
        before = len(gc.get_objects())
        _activate(self.loop, self.node, n, 100)
        self.loop.run_until_complete(asyncio.sleep(0.05))  # the activations settle
        gc.collect()  # what a burst leaves behind as garbage does not count
        return (len(gc.get_objects()) - before) / n

    track_tracked_objects_per_activation.unit = "objects"  # type: ignore[attr-defined]


class CyclicGarbage(_WarmMemoryNode):
    """Objects left as garbage cycles per first call through a fresh ref (memory
    store, 2,000 activations): only the cyclic collector frees them, after young
    collections traced them. 3.0 before 2026-12-03's senders that keep the actor's
    id instead of its ref, 0 after (on CQL, the driver's requests added 3.0 more)."""

    unit = "objects"


    def track_cyclic_garbage_per_activation(self) -> float:
        n = 2_000
        return _cyclic_garbage(lambda: _activate(self.loop, self.node, n, 100)) / n

    track_cyclic_garbage_per_activation.unit = "objects"  # type: ignore[attr-defined]


class PassivatedGarbage(_WarmMemoryNode):
    """Objects left as garbage cycles per passivated activation (memory store, 2,000
    activated, then passivated): an activation and its instance referred to each
    other, and its inbox's wake-up was its own method. 11.0 before 2026-12-03's
    ``Activation._unlink`` (12 with a storage module), 0 after."""

    unit = "objects"

    def track_cyclic_garbage_per_passivation(self) -> float:
        n = 2_000
        _activate(self.loop, self.node, n, 100)
        return _cyclic_garbage(lambda: _passivate(self.loop, self.node)) / n

    track_cyclic_garbage_per_passivation.unit = "objects"  # type: ignore[attr-defined]


class PassivationChurn(_WarmMemoryNode):
    """2,000 activations (one call each), then all passivated, on the memory store:
    the cost of actors that come and go (IoT devices, sessions)."""

    def time_activate_then_passivate(self) -> None:
        _activate(self.loop, self.node, 2_000, 100)
        _passivate(self.loop, self.node)


class CQLActivations:
    """2,000 fresh activations on Cassandra/ScyllaDB, per activation path; on the slot
    path every slot is held already (the steady state of a running node)."""

    params = ["actor", "slots"]
    param_names = ["activation"]
    timeout = 300.0

    def setup(self, activation: str) -> None:
        hosts = os.environ.get("DNA_CQL_HOSTS")
        if not hosts:
            raise NotImplementedError("no CQL server: set DNA_CQL_HOSTS")
        ks = os.environ.get("DNA_ASV_KEYSPACE", "dna_asv")
        url = f"cql://{hosts}/{ks}"
        if activation == "slots":
            url = f"cql://{hosts}/{ks}_slots?activation=slots"
        self.loop = asyncio.new_event_loop()
        self.node = dna.Node(store=open_store(url))
        self.loop.run_until_complete(self.node.start())
        if activation == "slots":  # take every slot before timing
            _activate(self.loop, self.node, 8_000, 1_000)

    def teardown(self, activation: str) -> None:
        self.loop.run_until_complete(self.node.stop())
        self.loop.close()

    def time_activations(self, activation: str) -> Any:
        _activate(self.loop, self.node, 2_000, 500)

"""A running node's collector threshold (``Node(gc_threshold=...)``, ``dna._gc``)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import dna
from dna import _gc
from dna.errors import StoreError
from dna.examples import KVActor

DEFAULT = (700, 10, 10)


@pytest.fixture(autouse=True)
def cpython_default() -> Iterator[None]:
    """Each test starts from CPython's thresholds, no node holding the setting."""
    saved = gc.get_threshold()
    assert _gc._holders == 0, "a node of another test is still running"
    gc.set_threshold(*DEFAULT)
    yield
    gc.set_threshold(*saved)


def node(tmp_path: Any, name: str, **kw: Any) -> dna.Node:
    return dna.Node(store=dna.SQLiteStore(str(tmp_path / f"{name}.db")), **kw)


async def test_a_running_node_raises_the_young_threshold_and_puts_it_back(tmp_path: Any) -> None:
    a, b = node(tmp_path, "a"), node(tmp_path, "b", gc_threshold=9_999)
    await a.start()
    assert gc.get_threshold() == (_gc.DEFAULT_THRESHOLD, 10, 10)
    await b.start()  # the setting in force stays; b only counts
    assert gc.get_threshold() == (_gc.DEFAULT_THRESHOLD, 10, 10)
    await a.stop()
    assert gc.get_threshold() == (_gc.DEFAULT_THRESHOLD, 10, 10)  # b still runs
    await b.stop()
    assert gc.get_threshold() == DEFAULT
    await b.stop()  # a second stop releases nothing more
    assert _gc._holders == 0


async def test_a_process_that_tuned_its_collector_keeps_its_own(tmp_path: Any) -> None:
    gc.set_threshold(1234, 5, 6)
    async with node(tmp_path, "a"):
        assert gc.get_threshold() == (1234, 5, 6)
    assert gc.get_threshold() == (1234, 5, 6)
    gc.set_threshold(*DEFAULT)
    async with node(tmp_path, "b", gc_threshold=None):  # None: left alone
        assert gc.get_threshold() == DEFAULT


async def test_a_change_made_while_a_node_runs_is_not_undone(tmp_path: Any) -> None:
    async with node(tmp_path, "a"):
        gc.set_threshold(4321, 10, 10)
    assert gc.get_threshold() == (4321, 10, 10)


async def test_a_node_that_fails_to_start_gives_the_setting_back(tmp_path: Any) -> None:
    bad = dna.Node(store=dna.SQLiteStore(str(tmp_path / "nowhere" / "x.db"), create=False))
    with pytest.raises(StoreError):
        await bad.start()
    assert gc.get_threshold() == DEFAULT and _gc._holders == 0


async def test_garbage_cycles_are_still_collected_while_a_node_runs(tmp_path: Any) -> None:
    class Cycle:
        me: Any

    async with node(tmp_path, "a"):
        c = Cycle()
        c.me = c
        gone = weakref.ref(c)
        del c
        # three young thresholds' worth of allocations: young collections find the
        # cycle, with no gc.collect() call (a collector left off would not)
        keep = [[i] for i in range(3 * _gc.DEFAULT_THRESHOLD)]
        assert gone() is None
        del keep


@pytest.mark.parametrize("bad", [0, -1, 1.5, "100", True])
def test_a_bad_threshold_is_refused_at_construction(tmp_path: Any, bad: Any) -> None:
    with pytest.raises(ValueError, match="gc_threshold"):
        node(tmp_path, "a", gc_threshold=bad)


def _cyclic_garbage(kinds: tuple[type, ...]) -> list[str]:
    """Names of the objects of ``kinds`` that only the cyclic collector could free."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return sorted({type(o).__qualname__ for o in gc.garbage if isinstance(o, kinds)})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def test_a_dropped_ref_is_freed_by_reference_counting(tmp_path: Any) -> None:
    """A ref caches its senders (``ref.ping``): a sender that kept the ref made every
    ref a garbage cycle, left for the collector (a burst of first calls through
    fresh refs made three such objects per call)."""
    from dna.senders import CallSender, CastSender

    async with node(tmp_path, "a") as n:
        await n.ref(KVActor, "warm").get("k")
        gc.collect()
        gc.disable()
        try:
            for i in range(20):
                ref = n.ref(KVActor, f"k{i}")
                await ref.put("k", i)
                await ref.put_cast("k", i)
                ref.put_cast.nowait("k", i)
                assert await ref.get.with_timeout(5)("k") == i
                del ref
            garbage = _cyclic_garbage((dna.ActorRef, CallSender, CastSender, dict))
        finally:
            gc.enable()
    assert garbage == []


class Keeper(KVActor):
    """The example KV actor that also hands out its own instance (a user keeping it
    past the activation) and destroys itself on demand."""

    type_name = "tests.Keeper"
    kept: list[Any] = []

    @dna.call
    def keep(self) -> None:
        Keeper.kept.append(self)

    @dna.call
    def bye(self) -> None:
        self.destroy()


async def test_a_closed_activation_is_freed_by_reference_counting(tmp_path: Any) -> None:
    """A passivated (or destroyed) activation was a garbage cycle (it and its instance
    refer to each other, its inbox's wake-up is its own method): 11 objects per
    passivation left to the collector, 12 with a storage module."""
    from dna.activation import Activation
    from dna.examples import Noop
    from dna.storage.base import StorageContext

    async with node(tmp_path, "a") as n:
        await n.ref(Noop, "warm").ping()
        await n.ref(Keeper, "warm").put("v", 0)
        gc.collect()
        gc.disable()
        try:
            for i in range(20):
                await n.ref(Noop, f"n{i}").ping()
                await n.ref(Keeper, f"k{i}").put("v", i)
                await n.ref(Keeper, f"d{i}").put("v", i)
                await n.ref(Keeper, f"d{i}").bye()  # destroyed: closed by the destroy path
            acts = [a for a in n.local_activations() if a.aid.key != "warm"]
            assert len(acts) == 40
            for act in acts:
                assert await act.passivate()
            del acts, act
            garbage = _cyclic_garbage((Activation, dna.Actor, StorageContext))
        finally:
            gc.enable()
        assert garbage == []
        assert await n.ref(Keeper, "k3").get("v") == 3  # a new activation, the state kept
        assert await n.ref(Keeper, "d3").get("v") is None  # destroyed for good


async def test_an_instance_kept_past_its_activation_refuses_destroy(tmp_path: Any) -> None:
    """A user may keep ``self`` beyond the activation; its ``destroy()`` must then be a
    clear error, not a write into a closed activation's dropped state."""
    from dna.errors import InterfaceError

    Keeper.kept.clear()
    async with node(tmp_path, "a") as n:
        ref = n.ref(Keeper, "x")
        await ref.put("v", 7)
        await ref.keep()
        (act,) = n.local_activations()
        assert await act.passivate()
        with pytest.raises(InterfaceError, match="only inside an activation"):
            Keeper.kept[0].destroy()
        assert await ref.get("v") == 7  # the actor lives on, untouched
    Keeper.kept.clear()

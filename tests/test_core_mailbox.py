"""Mailbox ring buffer, on both builds (compiled and pure twin)."""

from __future__ import annotations

import gc
import importlib
import tracemalloc
from types import ModuleType

import pytest


@pytest.fixture(params=["dna._core.mailbox", "dna._core.mailbox_py"])
def m(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


def test_fifo_order_and_len(m: ModuleType) -> None:
    box = m.Mailbox(100)
    for i in range(50):
        assert box.push(i)
    assert len(box) == 50
    assert box.drain(10) == list(range(10))
    for i in range(50, 90):
        assert box.push(i)
    assert box.drain(1000) == list(range(10, 90))
    assert len(box) == 0
    assert box.drain(5) == []


def test_capacity_and_full(m: ModuleType) -> None:
    box = m.Mailbox(3)
    assert box.capacity == 3 and not box.full
    assert box.push("a") and box.push("b") and box.push("c")
    assert box.full
    assert box.push("d") is False  # refused, not stored
    assert len(box) == 3
    assert box.drain(1) == ["a"]
    assert not box.full
    assert box.push("e")
    assert box.clear() == ["b", "c", "e"]
    assert len(box) == 0 and not box.full
    with pytest.raises(AttributeError):
        box.capacity = 5


def test_capacity_one(m: ModuleType) -> None:
    box = m.Mailbox(1)
    assert box.push(None)
    assert box.full and not box.push(1)
    assert box.drain(1) == [None]


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_capacity(m: ModuleType, bad: int) -> None:
    with pytest.raises(ValueError):
        m.Mailbox(bad)


def test_drain_limits(m: ModuleType) -> None:
    box = m.Mailbox(10)
    for i in range(5):
        box.push(i)
    assert box.drain(0) == []
    with pytest.raises(ValueError):
        box.drain(-1)
    assert box.drain(2) == [0, 1]
    assert box.drain(3) == [2, 3, 4]


def test_wraparound_and_growth(m: ModuleType) -> None:
    """Interleaved pushes and drains across every growth step keep FIFO order."""
    box = m.Mailbox(1000)
    expect: list[int] = []
    n = 0
    for step in range(300):
        for _ in range(step % 7 + 1):
            if box.push(n):
                expect.append(n)
            n += 1
        k = step % 5
        assert box.drain(k) == expect[:k]
        del expect[:k]
    assert box.clear() == expect


def test_fill_to_capacity_not_power_of_two(m: ModuleType) -> None:
    box = m.Mailbox(37)
    for i in range(40):
        assert box.push(i) is (i < 37)
    assert box.drain(100) == list(range(37))


def test_drained_items_are_released(m: ModuleType) -> None:
    class Item:
        pass

    box = m.Mailbox(200)
    items = [Item() for _ in range(100)]
    import weakref

    refs = [weakref.ref(x) for x in items]
    for x in items:
        box.push(x)
    del items, x
    box.drain(60)
    gc.collect()
    assert sum(r() is None for r in refs) == 60
    box.clear()
    gc.collect()
    assert all(r() is None for r in refs)


def _traced(fn: object) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = fn()  # type: ignore[operator]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del keep
    return after - before


def test_idle_mailboxes_are_small(m: ModuleType) -> None:
    """Idle mailboxes, also after a burst larger than the shrink threshold, cost little."""
    n = 2000

    def make() -> list[object]:
        boxes = []
        for _ in range(n):
            box = m.Mailbox(100_000)
            for i in range(300):
                box.push(i)
            box.drain(300)
            boxes.append(box)
        return boxes

    per_box = _traced(make) / n
    assert per_box < 200, f"{per_box:.0f} bytes per idle mailbox"


def test_small_mailboxes_after_small_traffic(m: ModuleType) -> None:
    n = 2000

    def make() -> list[object]:
        boxes = []
        for _ in range(n):
            box = m.Mailbox(1000)
            box.push(1)
            box.push(2)
            box.drain(2)
            boxes.append(box)
        return boxes

    per_box = _traced(make) / n
    assert per_box < 256, f"{per_box:.0f} bytes per mailbox"


def test_repr(m: ModuleType) -> None:
    box = m.Mailbox(4)
    box.push(1)
    assert repr(box) == "<Mailbox 1/4>"

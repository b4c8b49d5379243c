"""The claim limit (``dna._limit.Limiter``): FIFO, bounded, cancellation-safe."""

from __future__ import annotations

import asyncio

import pytest

from dna._limit import Limiter


async def test_at_most_n_hold_at_once_and_waiters_go_in_arrival_order() -> None:
    lim = Limiter(3)
    holding, peak, order = 0, 0, []
    gates = [asyncio.Event() for _ in range(20)]

    async def holder(i: int) -> None:
        nonlocal holding, peak
        async with lim:
            order.append(i)
            holding += 1
            peak = max(peak, holding)
            await gates[i].wait()
            holding -= 1

    tasks = [asyncio.create_task(holder(i)) for i in range(20)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert order == [0, 1, 2] and lim.waiting == 17
    for i in reversed(range(20)):  # release out of order: admission stays FIFO
        gates[i].set()
    await asyncio.gather(*tasks)
    assert order == list(range(20)) and peak == 3
    assert lim._free == 3 and lim.waiting == 0


async def test_a_waiter_cancelled_before_its_turn_loses_its_place_only() -> None:
    lim = Limiter(1)
    gate = asyncio.Event()
    got: list[str] = []

    async def holder(name: str, wait: bool) -> None:
        async with lim:
            got.append(name)
            if wait:
                await gate.wait()

    first = asyncio.create_task(holder("first", True))
    await asyncio.sleep(0)
    gone = asyncio.create_task(holder("gone", False))
    last = asyncio.create_task(holder("last", False))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    gate.set()
    await asyncio.gather(first, last)
    assert got == ["first", "last"] and lim._free == 1


async def test_a_waiter_cancelled_after_its_grant_passes_the_grant_on() -> None:
    lim = Limiter(1)
    got: list[str] = []

    async def holder(name: str) -> None:
        async with lim:
            got.append(name)

    await lim.__aenter__()  # held here
    granted = asyncio.create_task(holder("granted"))
    nxt = asyncio.create_task(holder("next"))
    await asyncio.sleep(0)
    await lim.__aexit__()  # grants "granted" its turn...
    granted.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await granted
    await nxt
    assert got == ["next"] and lim._free == 1 and lim.waiting == 0


async def test_many_waiters_all_pass() -> None:
    lim = Limiter(256)
    done = 0

    async def holder() -> None:
        nonlocal done
        async with lim:
            await asyncio.sleep(0)
            done += 1

    await asyncio.gather(*(holder() for _ in range(20_000)))
    assert done == 20_000 and lim._free == 256


def test_a_limit_admits_someone() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Limiter(0)

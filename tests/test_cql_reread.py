"""``Reread``, the CQL store's shared reads of a node row, as one layer (no server):
every caller gets the answer of a call that started after it asked, and a burst
of callers shares one or two calls."""

from __future__ import annotations

import asyncio

import pytest

from dna.store.cql._session import Reread


async def turns(n: int = 5) -> None:
    """A few turns of the loop: enough for asks and calls to start (no wall time)."""
    for _ in range(n):
        await asyncio.sleep(0)


class Source:
    """Calls held at a gate; each answers its own number."""

    def __init__(self) -> None:
        self.started = 0
        self.gate = asyncio.Event()
        self.fail: BaseException | None = None

    async def __call__(self) -> int:
        self.started += 1
        n = self.started
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return n


async def test_askers_during_a_call_share_the_next_one() -> None:
    src = Source()
    r = Reread(src)
    first = [asyncio.ensure_future(r.ask()) for _ in range(5)]
    await turns()
    assert src.started == 1  # one call for the five that asked before it started
    later = [asyncio.ensure_future(r.ask()) for _ in range(50)]
    await turns()
    assert src.started == 1  # they wait for the next one, not the one under way
    src.gate.set()
    assert await asyncio.gather(*first) == [1] * 5
    assert await asyncio.gather(*later) == [2] * 50
    assert src.started == 2 and r.idle
    assert await r.ask() == 3  # asked when idle: a fresh call


async def test_a_failed_call_fails_its_askers_and_the_next_call_runs() -> None:
    src = Source()
    r = Reread(src)
    src.fail = ValueError("down")
    first = asyncio.ensure_future(r.ask())
    await turns()
    second = asyncio.ensure_future(r.ask())  # the next call's
    await turns()
    src.gate.set()
    with pytest.raises(ValueError, match="down"):
        await first
    with pytest.raises(ValueError, match="down"):
        await second
    src.fail = None
    assert await r.ask() == 3


async def test_an_asker_that_leaves_cancels_nothing_for_the_others() -> None:
    src = Source()
    r = Reread(src)
    a, c = asyncio.ensure_future(r.ask()), asyncio.ensure_future(r.ask())
    await turns()
    b, d = asyncio.ensure_future(r.ask()), asyncio.ensure_future(r.ask())
    await turns()
    a.cancel()  # one of the call under way's askers
    b.cancel()  # one of the next call's
    src.gate.set()
    assert await c == 1
    assert await d == 2
    assert a.cancelled() and b.cancelled() and r.idle

"""``Reread``, the CQL store's shared reads of a node row, as one layer (no server):
every caller gets the answer of a call that started after it asked, and a burst
of callers shares one or two calls."""

from __future__ import annotations

import asyncio
import gc
import warnings

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
    second = asyncio.ensure_future(r.ask())
    await turns()
    src.gate.set()
    with pytest.raises(ValueError, match="down"):
        await first
    with pytest.raises(ValueError, match="down"):
        await second
    src.fail = None
    assert await r.ask() == 3


async def test_askers_that_leave_leave_no_unretrieved_error() -> None:
    src = Source()
    r = Reread(src)
    src.fail = ValueError("nobody listens")
    a = asyncio.ensure_future(r.ask())
    await turns()
    b = asyncio.ensure_future(r.ask())
    await turns()
    a.cancel()
    b.cancel()
    loop = asyncio.get_running_loop()
    seen: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
    try:
        src.gate.set()
        while not r.idle or src.started < 2:
            await turns()
        await turns()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert src.started == 2  # the second call still ran: someone asked for it
    assert seen == []

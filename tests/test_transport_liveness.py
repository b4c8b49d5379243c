"""Dead links noticed fast: a real TCP relay between two transports goes
silent (holds every byte, closes nothing), and calls in flight must fail
with a retryable PeerUnavailable within 3 s instead of waiting out their
timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from dna import errors
from dna.errors import PeerUnavailable
from test_transport import make, port_of, started
from test_transport_security import Relay


async def test_calls_on_a_blackholed_link_fail_within_3_s() -> None:
    loop = asyncio.get_running_loop()
    # answers "warm", never anything else
    b = make("b", on_request=lambda peer, msg: msg if msg == "warm" else loop.create_future())
    a = make("a")
    async with started(a, b), Relay(port_of(b)) as relay:
        assert await a.request(relay.address, "warm", 2.0) == "warm"
        call = asyncio.ensure_future(a.request(relay.address, "stuck", 30.0))
        await asyncio.sleep(0)  # the call is queued on the live link
        relay.silent = True
        t0 = time.monotonic()
        with pytest.raises(PeerUnavailable) as info:
            await asyncio.wait_for(call, 10.0)
        took = time.monotonic() - t0
        assert took < 3.0, f"noticed after {took:.1f} s"
        assert isinstance(info.value, errors.Retryable)


async def test_a_slow_handler_on_a_live_link_is_not_a_dead_link() -> None:
    async def slow(peer: str, msg: Any) -> Any:
        await asyncio.sleep(4.0)  # longer than the dead-link deadline
        return msg

    a, b = make("a"), make("b", on_request=slow)
    async with started(a, b) as (_, addr_b):
        assert await a.request(addr_b, "slow but alive", 10.0) == "slow but alive"

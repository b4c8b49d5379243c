"""The node's sweep: idle activations are looked for at the pace of
``passivate_after``, not at the lease's (each scan walks every activation)."""

from __future__ import annotations

import asyncio

import pytest

import dna
from dna.activation import Activation
from dna.examples import Noop
from dna.store.memory import MemoryStore


async def test_the_idle_scan_keeps_its_own_pace_between_cluster_ticks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # fence upkeep every 1.25 s (no lease: 5 s / 4); idle scans every 5 s (40 s / 4)
    async with dna.Node(store=MemoryStore(), passivate_after=40) as node:
        await node.ref(Noop, "swept").ping()
        scans = 0
        real_idle = Activation.idle

        def idle(self: Activation, now: float, after: float) -> bool:
            nonlocal scans
            scans += 1
            return real_idle(self, now, after)

        ticks = 0
        ticked = asyncio.Event()
        real_tick = node.cluster.tick

        async def tick() -> None:
            nonlocal ticks
            await real_tick()
            ticks += 1
            if ticks == 3:
                ticked.set()

        monkeypatch.setattr(Activation, "idle", idle)
        node.cluster.tick = tick  # type: ignore[method-assign]
        await asyncio.wait_for(ticked.wait(), 10)
        # three ticks (3.75 s) inside the first 5 s: the cluster's upkeep ran three
        # times, the walk over the activations never (it ran at every tick before)
        assert ticks == 3 and scans == 0


async def test_an_idle_activation_is_still_passivated_in_time() -> None:
    async with dna.Node(store=MemoryStore(), passivate_after=0.2) as node:
        await node.ref(Noop, "idle").ping()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.2 * 1.25 + 1.0  # idle time, a scan period, slack
        while node.activations:
            assert loop.time() < deadline, "not passivated within passivate_after + a scan"
            await asyncio.sleep(0.01)

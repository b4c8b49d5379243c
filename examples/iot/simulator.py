"""A simulator driving N devices at a given rate, through refs or the HTTP API.

Each device follows a slow sine wave plus noise around its own base value.
``RefSink`` casts ``Device.record`` straight to the actors (in the web process
or any node); ``HttpSink`` POSTs to ``/api/devices/{site}/{device}/readings``.
Readings carry their send time (ms since the epoch), which the device page uses
to measure how long a reading takes to reach the screen.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from typing import Any

from dna.errors import Retryable

from .actors import Device, device_key

__all__ = ["HttpSink", "RefSink", "Simulator", "device_names"]

log = logging.getLogger("examples.iot.simulator")


def device_names(sites: int, devices: int) -> list[tuple[str, str]]:
    """``devices`` per site over ``sites`` sites: ``("site-1", "sensor-01")``, ..."""
    return [(f"site-{s + 1}", f"sensor-{d + 1:02d}") for s in range(sites) for d in range(devices)]


class RefSink:
    """Sends readings as casts through kept refs on ``node``."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.refs: dict[str, Any] = {}

    async def send(self, site: str, device: str, ts: float, value: float) -> None:
        key = device_key(site, device)
        ref = self.refs.get(key)
        if ref is None:
            ref = self.refs[key] = self.node.ref(Device, key)
        await ref.record(ts, value)

    async def close(self) -> None:
        pass


class HttpSink:
    """POSTs readings to a running web process (``base`` like ``http://127.0.0.1:8000``)."""

    def __init__(self, base: str, concurrency: int = 32) -> None:
        import httpx

        limits = httpx.Limits(max_connections=concurrency)
        self.client = httpx.AsyncClient(base_url=base, limits=limits, timeout=10.0)

    async def send(self, site: str, device: str, ts: float, value: float) -> None:
        r = await self.client.post(f"/api/devices/{site}/{device}/readings",
                                   json={"ts": ts, "value": value})
        if r.status_code == 503:
            raise _Unavailable(r.text)
        r.raise_for_status()

    async def close(self) -> None:
        await self.client.aclose()


class _Unavailable(Retryable):
    pass


class Simulator:
    """Drives ``names`` (``(site, device)`` pairs) at ``rate`` readings/s each
    (``rate=0``: as fast as the sink takes them) until ``stop()``."""

    def __init__(self, sink: Any, names: list[tuple[str, str]], rate: float,
                 seed: int = 1) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.sink = sink
        self.names = names
        self.rate = rate
        self.sent = 0
        self.failed = 0
        self._rng = random.Random(seed)
        self._base = {n: self._rng.uniform(15, 30) for n in names}
        self._task: asyncio.Task[None] | None = None

    def value(self, name: tuple[str, str], t: float) -> float:
        base = self._base[name]
        return round(base + 4 * math.sin(t / 7 + base) + self._rng.gauss(0, 0.4), 3)

    async def send(self, site: str, device: str, value: float | None = None) -> float:
        """Send one reading now (``value`` or a simulated one); returns its ts (ms)."""
        now = time.time()
        if value is None:
            value = self.value((site, device), now)
        ts = now * 1000
        await self.sink.send(site, device, ts, value)
        self.sent += 1
        return ts

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _tick(self) -> None:
        async def one(site: str, device: str) -> None:
            try:
                await self.send(site, device)
            except Retryable as exc:  # a node died or the actor is moving: next tick
                self.failed += 1
                log.debug("reading for %s/%s not sent: %r", site, device, exc)
            except Exception as exc:
                self.failed += 1
                log.warning("reading for %s/%s not sent: %r", site, device, exc)

        await asyncio.gather(*(one(s, d) for s, d in self.names))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.rate if self.rate else 0.0
        next_at = loop.time()
        while True:
            await self._tick()
            if not period:
                await asyncio.sleep(0)
                continue
            next_at += period
            delay = next_at - loop.time()
            if delay < -1.0:  # fell behind by over a second: do not burst to catch up
                next_at = loop.time()
            await asyncio.sleep(max(0.0, delay))

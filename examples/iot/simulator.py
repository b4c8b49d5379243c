"""A simulator driving N devices at a given rate, through refs or the HTTP API.

Each device follows a slow sine wave plus noise around its own base value.
``RefSink`` casts ``Device.record`` straight to the actors (in the web process
or any node); ``HttpSink`` POSTs to ``/api/devices/{site}/{device}/readings``.
Readings carry their send time (ms since the epoch), which the device page uses
to measure how long a reading takes to reach the screen.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from typing import Any
from urllib.parse import quote, urlsplit

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

    async def send_many(self, rows: list[tuple[str, str, float, float]]) -> None:
        for site, device, ts, value in rows:
            await self.send(site, device, ts, value)

    async def close(self) -> None:
        pass


class HttpSink:
    """POSTs readings to a running web process (``base`` like ``http://127.0.0.1:8000``)
    over up to ``concurrency`` kept-alive connections.

    A minimal HTTP/1.1 client on asyncio streams: each request goes out in one
    write (a general-purpose client measured here at about 300 requests/s against
    2,500 for this one, the server being the same).
    """

    def __init__(self, base: str, concurrency: int = 32) -> None:
        u = urlsplit(base)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"HttpSink wants an http://host:port URL, not {base!r}")
        self.host, self.port = u.hostname, u.port or 80
        self._free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue())
        self._slots = asyncio.Semaphore(concurrency)
        self._open: list[asyncio.StreamWriter] = []

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """``(status, decoded JSON body)``; ConnectionError when the server hangs up."""
        data = b"" if body is None else json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n")
        async with self._slots:
            if self._free.empty():
                conn = await asyncio.open_connection(self.host, self.port)
                self._open.append(conn[1])
            else:
                conn = self._free.get_nowait()
            reader, writer = conn
            try:
                writer.write(head.encode() + data)
                status_line = await reader.readline()
                if not status_line:
                    raise ConnectionError("the server closed the connection")
                status, length = int(status_line.split()[1]), 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                payload = await reader.readexactly(length)
            except BaseException:
                writer.close()
                raise
            self._free.put_nowait(conn)
        return status, json.loads(payload) if payload else None

    async def _post(self, path: str, body: Any) -> None:
        status, reply = await self.request("POST", path, body)
        if status == 503:
            raise _Unavailable(str(reply))
        if status >= 400:
            raise RuntimeError(f"POST {path}: {status} {reply}")

    async def send(self, site: str, device: str, ts: float, value: float) -> None:
        path = f"/api/devices/{quote(site, safe='')}/{quote(device, safe='')}/readings"
        await self._post(path, {"ts": ts, "value": value})

    async def send_many(self, rows: list[tuple[str, str, float, float]]) -> None:
        """One ``POST /api/readings`` for all of ``rows``."""
        await self._post("/api/readings", {"readings": [
            {"site": s, "device": d, "ts": t, "value": v} for s, d, t, v in rows]})

    async def close(self) -> None:
        for w in self._open:
            w.close()
        self._open.clear()


class _Unavailable(Retryable):
    pass


class Simulator:
    """Drives ``names`` (``(site, device)`` pairs) at ``rate`` readings/s each
    (``rate=0``: as fast as the sink takes them) until ``stop()``; with ``batch``
    each tick's readings go as one message (one HTTP request)."""

    def __init__(self, sink: Any, names: list[tuple[str, str]], rate: float,
                 seed: int = 1, batch: bool = False) -> None:
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.sink = sink
        self.batch = batch  # one send_many per tick instead of one send per device
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
        if self.batch:  # every device's reading of this tick in one message
            now = time.time()
            rows = [(s, d, now * 1000, self.value((s, d), now)) for s, d in self.names]
            try:
                await self.sink.send_many(rows)
                self.sent += len(rows)
            except Exception as exc:
                self.failed += len(rows)
                log.warning("%d readings not sent: %r", len(rows), exc)
            return

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

"""Remote call round trip of ``dna.transport`` on loopback (no storage, no actor).

    PYTHONPATH=src python bench/transport_rtt.py [--seconds 3] [--inflight 64] [--same-process]
    PYTHONPATH=src python bench/transport_rtt.py --cpu

Calls go the way the runtime's do: ``request`` is ``request_to`` with a future
for target, and the peer's ``on_request`` is run through the ``on_call`` path.
The peer runs in a second process (``--same-process`` puts it on the
caller's event loop instead). Prints, for one call at a time, round trips/s
and p50/p99 latency in microseconds; then calls/s with ``--inflight`` calls
outstanding; then one-way messages/s (many small ``send``s, the peer counts
them and answers a final call with its count); then, for scale, the same
sequential figure for a plain asyncio TCP echo over one connection. Asserts nothing.

``--cpu`` instead prints CPU time (not wall time) per one-way message, per
call with 64 in flight and per sequential call, both ends on one loop, the
least of 7 rounds: steadier than wall-clock rates on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from typing import Any

from dna import _core
from dna.transport import Transport

SECRET = b"bench secret"


received = 0  # one-way messages the peer got


def handler(peer: str, msg: Any) -> Any:
    if msg == "count?":
        return received
    return msg


def on_message(peer: str, msg: Any) -> None:
    global received
    received += 1


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class EchoClient(asyncio.Protocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


async def serve() -> None:
    """The peer process: a transport and a raw echo server; prints both addresses."""
    loop = asyncio.get_running_loop()
    t = Transport("bench-server", SECRET, on_request=handler, on_message=on_message)
    await t.start("127.0.0.1", 0)
    echo = await loop.create_server(Echo, "127.0.0.1", 0)
    print(t.address, echo.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    echo.close()
    await t.close()


def percentile(sorted_us: list[float], p: float) -> float:
    return sorted_us[min(len(sorted_us) - 1, int(len(sorted_us) * p))]


async def sequential(call: Any, seconds: float) -> tuple[float, list[float]]:
    for _ in range(500):  # warm up: connection, caches
        await call()
    lat: list[float] = []
    clock = time.perf_counter
    end = clock() + seconds
    t0 = clock()
    while True:
        s = clock()
        await call()
        e = clock()
        lat.append((e - s) * 1e6)
        if e > end:
            break
    return len(lat) / (clock() - t0), sorted(lat)


async def pipelined(t: Transport, address: str, inflight: int, seconds: float) -> float:
    done = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await t.request(address, b"x", 10.0)
            done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    return done / (time.perf_counter() - t0)


async def oneway(t: Transport, address: str, seconds: float) -> float:
    """Small one-way messages/s: sends in bursts, yielding between them, until the
    peer has counted everything sent within ``seconds``."""
    start = await t.request(address, "count?", 10.0)
    sent = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for i in range(256):
            t.send(address, [b"m", i])
        sent += 256
        await t.writable(address)
    while await t.request(address, "count?", 10.0) - start < sent:
        pass
    return sent / (time.perf_counter() - t0)


async def echo_baseline(port: int, seconds: float) -> tuple[float, list[float]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(EchoClient, "127.0.0.1", port)

    async def call() -> None:
        proto.waiter = loop.create_future()
        transport.write(b"0123456789abcdef")
        await proto.waiter

    try:
        return await sequential(call, seconds)
    finally:
        transport.close()


def report(what: str, rate: float, lat: list[float]) -> None:
    print(f"{what:<34} {rate:>9,.0f} round trips/s   p50 {percentile(lat, 0.5):6.0f} us"
          f"   p99 {percentile(lat, 0.99):6.0f} us")


async def main(args: argparse.Namespace, proc: subprocess.Popen[str] | None) -> None:
    peer: Transport | None = None
    echo_server: asyncio.Server | None = None
    if proc is None:
        peer = Transport("bench-server", SECRET, on_request=handler, on_message=on_message)
        await peer.start("127.0.0.1", 0)
        address = peer.address or ""
        echo_server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
        echo_port = echo_server.sockets[0].getsockname()[1]
    else:
        assert proc.stdout is not None
        address, port_text = proc.stdout.readline().split()
        echo_port = int(port_text)
    t = Transport("bench-client", SECRET, on_request=handler, on_message=lambda p, m: None)
    where = "same process" if args.same_process else "peer in another process"
    print(f"dna.transport round trips on loopback ({where}; compiled core: {_core.COMPILED})")
    try:
        rate, lat = await sequential(lambda: t.request(address, b"x", 10.0), args.seconds)
        report("transport, 1 call at a time", rate, lat)
        rate = await pipelined(t, address, args.inflight, args.seconds)
        print(f"{f'transport, {args.inflight} calls in flight':<34} {rate:>9,.0f} calls/s")
        rate = await oneway(t, address, args.seconds)
        print(f"{'transport, one-way messages':<34} {rate:>9,.0f} messages/s")
        rate, lat = await echo_baseline(echo_port, args.seconds)
        report("plain asyncio TCP echo (scale)", rate, lat)
    finally:
        await t.close()
        if peer is not None:
            await peer.close()
        if echo_server is not None:
            echo_server.close()


async def cpu_rounds() -> None:
    """CPU time per operation, both transports on this loop, least of 7 rounds."""
    b = Transport("bench-server", SECRET, on_request=handler, on_message=on_message)
    a = Transport("bench-client", SECRET, on_request=handler, on_message=on_message)
    await b.start("127.0.0.1", 0)
    address = b.address or ""
    try:
        await a.request(address, "warm", 10.0)

        async def one_way() -> float:
            start, clock = received, time.process_time()
            for _ in range(200):
                for i in range(256):
                    a.send(address, [b"m", i])
                await a.writable(address)
            while await a.request(address, "count?", 10.0) - start < 200 * 256:
                pass
            return (time.process_time() - clock) / (200 * 256)

        async def in_flight() -> float:
            clock = time.process_time()
            await asyncio.gather(*(
                asyncio.gather(*(a.request(address, b"x", 10.0) for _ in range(64)))
                for _ in range(300)
            ))
            return (time.process_time() - clock) / (300 * 64)

        async def sequential_calls() -> float:
            clock = time.process_time()
            for _ in range(2000):
                await a.request(address, b"x", 10.0)
            return (time.process_time() - clock) / 2000

        o = min([await one_way() for _ in range(7)])
        p = min([await in_flight() for _ in range(7)])
        s = min([await sequential_calls() for _ in range(7)])
        print(f"CPU per one-way message {o * 1e9:,.0f} ns; per call, 64 in flight "
              f"{p * 1e6:.2f} us; per sequential call {s * 1e6:.1f} us "
              f"(compiled core: {_core.COMPILED})")
    finally:
        await a.close()
        await b.close()


def run(args: argparse.Namespace) -> None:
    if args.cpu:
        asyncio.run(cpu_rounds())
        return
    if args.same_process:
        asyncio.run(main(args, None))
        return
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=os.environ,
    )
    try:
        asyncio.run(main(args, proc))
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--same-process", action="store_true")
    parser.add_argument("--cpu", action="store_true", help="CPU time per operation instead")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.serve:
        asyncio.run(serve())
    else:
        run(ns)

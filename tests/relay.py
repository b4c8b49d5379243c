"""A TCP relay for fault tests: put it between real node processes and blackhole
one direction (bytes held, not forwarded, the connection kept open: no FIN, no
RST), then resume.

    relay = Relay("127.0.0.1", target_port)
    await relay.start(port)        # relay.port: where peers should dial (0: any free port)
    relay.blackhole("backward")    # target -> dialer held; "forward" is dialer -> target
    relay.resume()                 # held bytes flow again
    await relay.close()
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Relay"]

DIRECTIONS = ("forward", "backward")


class Relay:
    """Accepts connections and pipes each to ``host:port``, both ways."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.target_port = host, port
        self.port = 0  # our listening port, once started
        self.open = {d: asyncio.Event() for d in DIRECTIONS}  # set: bytes flow that way
        for ev in self.open.values():
            ev.set()
        self.held = {d: 0 for d in DIRECTIONS}  # bytes read and held while blackholed
        self.connections = 0  # connections accepted so far
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    def blackhole(self, direction: str) -> None:
        self.open[direction].clear()

    def resume(self) -> None:
        for ev in self.open.values():
            ev.set()

    async def _accepted(self, r1: asyncio.StreamReader, w1: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            r2, w2 = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            w1.close()
            return
        pumps = [asyncio.ensure_future(self._pump(r1, w2, "forward")),
                 asyncio.ensure_future(self._pump(r2, w1, "backward"))]
        for t in pumps:
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for t in pumps:
            t.cancel()
        for w in (w1, w2):
            w.close()

    async def _pump(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, way: str) -> None:
        with contextlib.suppress(OSError):
            while data := await r.read(65536):
                if not self.open[way].is_set():
                    self.held[way] += len(data)
                    await self.open[way].wait()  # hold it; read no more: the kernel fills
                w.write(data)
                await w.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)

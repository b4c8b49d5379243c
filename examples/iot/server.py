"""Run the web process: a DNA node (hosting, or a client of a cluster), the
Starlette app on uvicorn, and optionally the simulator through refs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from typing import Any

import uvicorn

import dna
from dna.store import open_store

from .simulator import RefSink, Simulator, device_names
from .web import Web

__all__ = ["WebConfig", "serve"]

log = logging.getLogger("examples.iot")


@dataclass
class WebConfig:
    store: str  # store URL
    host: str = "127.0.0.1"
    port: int = 8000
    client: bool = False  # a client node of a cluster: hosts no actors
    listen: str | None = None  # host:port for peers (required with client)
    secret: bytes | None = None
    sites: int = 2
    devices: int = 4  # per site
    rate: float = 2.0  # readings/s per device; 0: no simulator
    poll: float = 0.02  # seconds between the web's polls of a watched actor


async def serve(cfg: WebConfig, ready: Any = None) -> None:
    """Run until SIGINT/SIGTERM. ``ready(url)`` is called once the server listens."""
    node = dna.Node(store=open_store(cfg.store), host_actors=not cfg.client,
                    listen=cfg.listen, secret=cfg.secret)
    await node.start()
    web = Web(node, poll_period=cfg.poll)
    sim = None
    try:
        if cfg.rate > 0 and cfg.sites > 0 and cfg.devices > 0:
            sim = Simulator(RefSink(node), device_names(cfg.sites, cfg.devices), cfg.rate)
            sim.start()
        config = uvicorn.Config(web.app, host=cfg.host, port=cfg.port, log_level="warning",
                                lifespan="off", ws="none", timeout_graceful_shutdown=1)
        server = uvicorn.Server(config)
        # our own handlers stop the server, then the simulator and the node, in that order
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign, assignment]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        task = loop.create_task(server.serve())
        while not server.started and not task.done():  # noqa: ASYNC110 (uvicorn has no event)
            await asyncio.sleep(0.02)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1]  # --port 0 picks a free one
            url = f"http://{cfg.host}:{port}"
            print(f"IoT dashboard on {url}  (node {node.node_id}"
                  f"{', client of the cluster' if cfg.client else ''})", flush=True)
            if ready is not None:
                ready(url)
        await task
    finally:
        web.close()
        if sim is not None:
            await sim.stop()
        await node.stop()

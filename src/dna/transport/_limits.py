"""Limits on strangers: the slot an unauthenticated connection holds, and a log
throttle so that no peer can grow the log per connection.

Private to ``dna.transport``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import socket

    from ._conn import Connection

__all__ = ["Admission", "Throttled"]

log = logging.getLogger("dna.transport")


class Throttled:
    """Warnings that could repeat once per connection: at most ``burst`` per
    ``period`` seconds, the rest counted and reported with the next one let through."""

    def __init__(self, period: float = 10.0, burst: int = 5) -> None:
        self.period = period  # seconds per window
        self.burst = burst  # messages let through per window
        self.window = -period  # monotonic start of the current window
        self.count = 0  # messages let through in the current window
        self.suppressed = 0  # messages dropped since the last one let through

    def warning(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self.window >= self.period:
            self.window, self.count = now, 0
        if self.count >= self.burst:
            self.suppressed += 1
            return
        self.count += 1
        if self.suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, self.suppressed)
            self.suppressed = 0
        log.warning(msg, *args)


class Admission:
    """An accepted connection that has not authenticated yet: it holds a slot."""

    __slots__ = ("conn", "host", "sock", "task")

    def __init__(self, host: str, sock: socket.socket) -> None:
        self.host = host  # the peer's IP address
        self.sock = sock  # the accepted socket (closed here if asyncio never took it)
        self.task: asyncio.Task[Any] | None = None  # connect_accepted_socket (TLS handshake)
        self.conn: Connection | None = None  # once the connection is made

"""Coverage-guided fuzzing (atheris) of what the transport reads from strangers.

    pip install atheris
    PYTHONPATH=src python bench/fuzz_transport.py -max_total_time=180 [-rss_limit_mb=1024]

Each input picks one of three targets:

0. both frame decoders (compiled and pure Python), fed the same chunks with
   the same limit, must agree exactly (objects and error messages), and
   raise nothing but ProtocolError;
1. a real ``Connection`` before authentication (optionally after a valid
   HELLO) fed arbitrary bytes: ``data_received`` never raises, the
   connection never becomes READY without the secret, and never buffers
   more than 1 KiB;
2. a real authenticated ``Connection`` fed arbitrary frames in correctly
   sealed records: ``data_received`` never raises (handlers included).

Any other exception is a crash (atheris stops and saves the input). Every
30 s it prints the inputs run so far and the peak RSS. Asserts nothing about speed.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import sys
import time
from typing import Any

import atheris

with atheris.instrument_imports():
    from dna._core import framing as compiled
    from dna._core import framing_py as pure
    from dna.errors import ProtocolError
    from dna.transport import Transport
    from dna.transport._auth import Hello, Sealer, build_hello, derive_keys, new_nonce
    from dna.transport._conn import CLOSED, READY, Connection

SECRET = b"fuzz secret"
runs = [0, 0, 0]  # inputs per target
started = time.monotonic()
next_report = started + 30.0  # libFuzzer exits without running atexit: report as we go


class Wire(asyncio.Transport):
    """A stand-in for the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def write(self, data: Any) -> None:
        pass

    def abort(self) -> None:
        self.aborted = True

    close = abort

    def is_closing(self) -> bool:
        return self.aborted

    def get_extra_info(self, name: Any, default: Any = None) -> Any:
        return ("203.0.113.1", 4242) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0


loop = asyncio.new_event_loop()  # run one iteration at a time, between inputs
node = Transport("n", SECRET, on_request=lambda p, m: m, on_message=lambda p, m: None)
node._loop = loop
logging.getLogger("dna.transport").disabled = True


def decode(decoder: Any, parts: list[bytes]) -> list[Any]:
    out: list[Any] = []
    try:
        for part in parts:
            decoder.feed(part)
            out.extend(decoder)
    except ProtocolError as e:
        out.append(("ProtocolError", str(e)))
    return out


def split(fdp: atheris.FuzzedDataProvider) -> list[bytes]:
    parts = []
    while fdp.remaining_bytes():
        parts.append(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 300)))
    return parts


def accept() -> tuple[Connection, Wire]:
    conn = Connection(node, True, None)
    wire = Wire()
    conn.connection_made(wire)
    return conn, wire


def one_input(data: bytes) -> None:
    global next_report
    if sum(runs) % 1000 == 0:
        # one loop iteration: queued flushes run, cancelled timers are dropped
        # (a loop that never runs would keep every connection alive through them)
        loop.run_until_complete(asyncio.sleep(0))
    if time.monotonic() >= next_report:
        next_report += 30.0
        report()
    fdp = atheris.FuzzedDataProvider(data)
    target = fdp.ConsumeIntInRange(0, 2)
    runs[target] += 1
    if target == 0:
        limit = fdp.ConsumeIntInRange(0, 1 << 16)
        parts = split(fdp)
        a, b = decode(compiled.FrameDecoder(limit), parts), decode(pure.FrameDecoder(limit), parts)
        if a != b:
            raise AssertionError(f"the builds disagree: {a!r:.300} != {b!r:.300}")
    elif target == 1:
        conn, wire = accept()
        if fdp.ConsumeBool():
            conn.data_received(build_hello(True, new_nonce(), "stranger", ""))
        for part in split(fdp):
            conn.data_received(part)
        if conn.state == READY or len(conn.inbuf) > 1024:
            raise AssertionError("a stranger got in, or made us buffer too much")
        if (conn.state == CLOSED) != wire.aborted:
            raise AssertionError("closed without dropping the socket, or the reverse")
        conn.drop("done")
        conn.connection_lost(None)  # what asyncio does once the socket is gone
    else:
        conn, _ = accept()
        peer = Hello(True, new_nonce(), "peer", "")
        conn.data_received(build_hello(*peer))
        keys = derive_keys(node._master, False, peer, conn.hello)
        conn.data_received(keys.proof_out)
        sealer = Sealer(keys.mac_out)
        for part in split(fdp):
            conn.data_received(sealer.seal(part))
        conn.drop("done")
        conn.connection_lost(None)


def report() -> None:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    took = time.monotonic() - started
    print(f"fuzz_transport: {sum(runs):,} inputs in {took:.0f} s (decoders {runs[0]:,}, "
          f"handshake {runs[1]:,}, frames {runs[2]:,}); peak RSS {rss:.0f} MiB", flush=True)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()

"""Peers that flood a node: what it holds in memory, and how a legitimate call fares.

    python bench/flood.py [--json]

One ``dna node`` process on a fresh SQLite file (mailbox 10,000) is attacked three
ways, one after the other, while a well-behaved client pings another actor on it:

- casts: 100,000 remote casts of 1 KB into a slow actor (1 ms a message);
- casts-same-peer: the same, with the legitimate calls (to another actor) made by
  the flooding peer itself, over the same connection (head-of-line blocking);
- replies: 400 calls for a 1 MiB value from a peer that never reads the answers;
- half-open: 1,024 TCP connections that never finish the handshake.

Reported per attack: the node's peak RSS (sampled every 50 ms) and the p50/p99 of
the legitimate call. The documented bound (README, "Flow control and limits"):
about mailbox x message size per peer for queued messages, ``max_unsent`` for
unread replies, ``max_handshaking`` connections for strangers, plus the base.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

import dna

HERE = Path(__file__).resolve().parent
SECRET = b"flood-bench-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def sample_rss(pid: int, stop: asyncio.Event) -> float:
    proc = psutil.Process(pid)
    peak = 0
    while not stop.is_set():
        peak = max(peak, proc.memory_info().rss)
        await asyncio.sleep(0.05)
    return peak / 2**20


async def legit_calls(node: dna.Node, stop: asyncio.Event) -> list[float]:
    from flood_app import Pinger

    ref = node.ref(Pinger, "legit")
    lat = []
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            await ref.ping.with_timeout(5.0)()
            lat.append(time.perf_counter() - t0)
        except dna.errors.DNAError:
            lat.append(5.0)
        await asyncio.sleep(0.01)
    return lat


async def attack_casts(node: dna.Node) -> None:
    from flood_app import Slow

    ref = node.ref(Slow, "slow")
    pad = b"x" * 1024
    for _ in range(100_000):
        await ref.work(pad)
    await ref.count.with_timeout(300.0)()


async def attack_replies(address: str) -> None:
    from dna.transport import Transport

    t = Transport("flood-reader", SECRET, on_message=lambda *a: None,
                  on_call=lambda *a: None)
    await t.start("127.0.0.1", 0)
    wire = ["flood_app.Blob", "default", "b", [["get", [], None]], 1, []]
    try:
        await t.request(address, ["flood_app.Blob", "default", "b",
                                  [["get", [], None]], 1, []], 30.0)
        conn = t._conns[address]
        assert conn.transport is not None
        conn.transport.pause_reading()  # from here on, never read an answer
        waits = [asyncio.ensure_future(t.request(address, wire, 20.0)) for _ in range(400)]
        await asyncio.wait(waits, timeout=20.0)
        for w in waits:
            w.cancel()
    finally:
        await t.close()


async def attack_half_open(address: str) -> None:
    host, port = address.rsplit(":", 1)
    socks = []
    for i in range(1024):
        s = socket.socket()
        s.setblocking(False)
        try:  # from 8 other loopback addresses: the legitimate peer has its own
            s.bind((f"127.0.0.{2 + i % 8}", 0))
            s.connect_ex((host, int(port)))
        except OSError:
            s.close()
            continue
        socks.append(s)
    await asyncio.sleep(8.0)  # past the handshake deadline, so they cycle
    for s in socks:
        s.close()


def start_node(db: Path, secret_file: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    root = str(Path(dna.__file__).resolve().parent.parent)  # the same dna as this process
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), root])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dna", "node", "--store", f"sqlite://{db}", "--listen",
         f"127.0.0.1:{port}", "--secret-file", str(secret_file), "--app", "flood_app",
         "--log-level", "ERROR"],
        stdout=subprocess.PIPE, text=True, env=env, cwd=HERE,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc, f"127.0.0.1:{port}"


async def run(kind: str, db: Path, secret_file: Path) -> dict[str, Any]:
    proc, address = start_node(db, secret_file)
    client = dna.Node(store=dna.SQLiteStore(str(db)), listen="127.0.0.1:0", secret=SECRET,
                      host_actors=False)
    peer = dna.Node(store=dna.SQLiteStore(str(db)), listen="127.0.0.1:0", secret=SECRET,
                    host_actors=False)  # a legitimate peer: a connection of its own
    try:
        async with client, peer:
            await client.cluster.refresh_peers()
            await peer.cluster.refresh_peers()
            from flood_app import Pinger

            caller = client if kind == "casts-same-peer" else peer
            await caller.ref(Pinger, "legit").ping()  # connected before the attack
            stop = asyncio.Event()
            rss = asyncio.ensure_future(sample_rss(proc.pid, stop))
            legit = asyncio.ensure_future(legit_calls(caller, stop))
            t0 = time.perf_counter()
            if kind in ("casts", "casts-same-peer"):
                await attack_casts(client)
            elif kind == "replies":
                await attack_replies(address)
            else:
                await attack_half_open(address)
            seconds = time.perf_counter() - t0
            stop.set()
            lat = sorted(await legit)
            return {"attack": kind, "seconds": round(seconds, 1),
                    "peak_rss_mib": round(await rss, 1),
                    "legit_p50_ms": round(statistics.median(lat) * 1e3, 2),
                    "legit_p99_ms": round(lat[int(len(lat) * 0.99)] * 1e3, 2),
                    "legit_calls": len(lat)}
    finally:
        proc.terminate()
        proc.wait(30)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", default="casts,casts-same-peer,replies,half-open")
    ns = ap.parse_args()
    sys.path.insert(0, str(HERE))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        secret_file = Path(tmp) / "secret"
        secret_file.write_bytes(SECRET)
        secret_file.chmod(0o600)
        for kind in ns.only.split(","):
            out.append(await run(kind, Path(tmp) / f"{kind}.db", secret_file))
            print(json.dumps(out[-1]), file=sys.stderr)
    print(json.dumps(out) if ns.json else "\n".join(json.dumps(o) for o in out))


if __name__ == "__main__":
    asyncio.run(main())

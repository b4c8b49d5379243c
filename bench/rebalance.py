"""Rebalancing when a node joins: time to balance, call latency during the move.

    python bench/rebalance.py [--store URL] [--actors 3000] [--nodes 3] [--rate 100]
                              [--workers 64] [--within 60]

``--nodes`` `dna node` processes share a store (a fresh SQLite file unless
``--store`` names a CQL keyspace); this process is a client node
(host_actors=False) that puts to ``--actors`` KVActors without pause from
``--workers`` tasks, retrying a call that fails with a retryable error. Once
every actor has answered, and two seconds of steady load later (the latency
"before"), one more node starts; the bench polls the nodes table
until every hosting node holds its share (1/(nodes+1)) within ``--band``, then
reads every acknowledged write back. Prints the figures as JSON lines; asserts
nothing about speed (tests/test_rebalance.py runs it and checks correctness).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dna
from dna.examples import KVActor
from dna.store import open_store


def start_node(store: str, secret_file: Path, rate: float, weight: float = 1.0
               ) -> subprocess.Popen[str]:
    """A `dna node` process; returns once it listens."""
    p = subprocess.Popen(
        [sys.executable, "-m", "dna", "node", "--store", store, "--listen", "127.0.0.1:0",
         "--secret-file", str(secret_file), "--rebalance-rate", str(rate),
         "--weight", str(weight), "--passivate-after", "3600", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, text=True,
    )
    assert p.stdout is not None
    line = p.stdout.readline()
    if "listening on" not in line:
        raise RuntimeError(f"dna node did not start (exit {p.wait()})")
    return p


def stop_node(p: subprocess.Popen[str]) -> None:
    """SIGTERM (the node drains), wait, close its pipe."""
    p.terminate()
    p.wait()
    if p.stdout is not None:
        p.stdout.close()


@dataclass
class Load:
    """Calls made by the client and what they saw."""

    acked: dict[str, list[int]] = field(default_factory=dict)  # actor key -> puts acked
    calls: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)
    retried: dict[str, int] = field(default_factory=dict)  # retryable error -> count
    failed: list[str] = field(default_factory=list)  # non-retryable errors
    stop: bool = False


async def put_forever(node: dna.Node, keys: list[str], load: Load) -> None:
    """Put to each of ``keys`` in turn until ``load.stop``; retry retryable errors."""
    seq = 0
    while not load.stop:
        for key in keys:
            put = node.ref(KVActor, key).put.with_timeout(10.0)
            seq += 1
            while True:
                t0 = time.monotonic()
                try:
                    await put(f"w{seq}", seq)
                except dna.errors.Retryable as exc:
                    name = type(exc).__name__
                    load.retried[name] = load.retried.get(name, 0) + 1
                    continue
                except Exception as exc:
                    load.failed.append(f"{key}: {type(exc).__name__}: {exc}")
                    break
                load.calls.append((t0, time.monotonic() - t0))
                load.acked.setdefault(key, []).append(seq)
                break
            if load.stop:
                return


async def hosting_loads(node: dna.Node) -> dict[str, int]:
    """Activations per live hosting node, as the nodes table says."""
    return {r.node_id: r.load for r in await node.store.nodes()
            if not r.draining and r.alive is not False}


def balanced(loads: dict[str, int], nodes: int, band: float) -> bool:
    total = sum(loads.values())
    return (len(loads) == nodes and total > 0
            and all(abs(n / total - 1 / nodes) <= band for n in loads.values()))


async def poll(what: Any, deadline: float, pause: float = 0.2) -> Any:
    """Poll ``what()`` (other processes' state) until truthy or the deadline."""
    while True:
        got = await what()
        if got or time.monotonic() > deadline:
            return got
        await asyncio.sleep(pause)


async def verify(node: dna.Node, load: Load) -> list[str]:
    """Every acknowledged put, read back: a list of what is missing."""
    missing: list[str] = []
    for key, seqs in load.acked.items():
        ref = node.ref(KVActor, key)
        rows = dict(await ref.list.with_timeout(30.0)("w", len(seqs) + 10))
        missing += [f"{key}/w{s}" for s in seqs if rows.get(f"w{s}") != s]
    return missing


def p99(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))] if xs else float("nan")


async def run(store: str, secret_file: Path, *, actors: int = 3000, nodes: int = 3,
              rate: float = 100.0, workers: int = 64, within: float = 60.0,
              band: float = 0.05) -> dict[str, Any]:
    """The whole experiment; returns figures and what went wrong (for the test)."""
    procs = [start_node(store, secret_file, rate) for _ in range(nodes)]
    load = Load()
    try:
        client = dna.Node(store=open_store(store), listen="127.0.0.1:0",
                          secret=secret_file.read_bytes(),  # noqa: ASYNC240
                          host_actors=False, call_timeout=10.0)
        async with client:
            await client.cluster.refresh_peers()
            keys = [f"rb-{i}" for i in range(actors)]
            tasks = [asyncio.create_task(put_forever(client, keys[i::workers], load))
                     for i in range(workers)]

            async def all_active() -> bool:  # every actor answered once
                return len(load.acked) >= actors

            t_up = time.monotonic()
            if not await poll(all_active, t_up + within):
                raise RuntimeError(f"{actors} actors not active within {within} s")
            t_steady = time.monotonic()
            await asyncio.sleep(2.0)  # two seconds of steady load before the join
            before = await hosting_loads(client)
            t0 = time.monotonic()
            procs.append(start_node(store, secret_file, rate))
            ok = await poll(lambda: _balanced(client, nodes + 1, band), t0 + within)
            t_bal = time.monotonic()
            after = await hosting_loads(client)
            await asyncio.sleep(1.0)  # a second more of load on the balanced cluster
            load.stop = True
            await asyncio.gather(*tasks)
            missing = await verify(client, load)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            stop_node(p)
    during = [s for t, s in load.calls if t0 <= t <= t_bal]
    return {
        "balanced": bool(ok), "seconds_to_balance": round(t_bal - t0, 2),
        "loads_before": sorted(before.values()), "loads_after": sorted(after.values()),
        "calls": len(load.calls), "calls_during_move": len(during),
        "p99_ms_during_move": round(p99(during) * 1000, 1),
        "p99_ms_steady_before": round(
            p99([s for t, s in load.calls if t_steady <= t < t0]) * 1000, 1),
        "retried": load.retried, "failed": load.failed[:10], "n_failed": len(load.failed),
        "acked": sum(len(v) for v in load.acked.values()), "missing": missing[:10],
        "n_missing": len(missing),
    }


async def _balanced(client: dna.Node, nodes: int, band: float) -> bool:
    return balanced(await hosting_loads(client), nodes, band)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", help="store URL (default: a fresh SQLite file)")
    ap.add_argument("--actors", type=int, default=3000)
    ap.add_argument("--nodes", type=int, default=3, help="nodes before one joins")
    ap.add_argument("--rate", type=float, default=100.0, help="--rebalance-rate of each node")
    ap.add_argument("--workers", type=int, default=64, help="concurrent callers")
    ap.add_argument("--within", type=float, default=60.0, help="seconds allowed to balance")
    ap.add_argument("--band", type=float, default=0.05, help="allowed share deviation")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        secret_file = Path(tmp) / "secret"
        secret_file.write_text(secrets.token_hex(16))
        os.chmod(secret_file, 0o600)
        store = args.store or f"sqlite://{tmp}/rebalance.db"
        out = asyncio.run(run(store, secret_file, actors=args.actors, nodes=args.nodes,
                              rate=args.rate, workers=args.workers, within=args.within,
                              band=args.band))
    print(json.dumps({"store": store.split(":")[0], "actors": args.actors,
                      "nodes": f"{args.nodes}+1", "rate": args.rate, **out}))


if __name__ == "__main__":
    main()

"""Activation rate: N fresh actors each get one call (so one claim each), against
the raw rate of N pipelined first claims on the same store, in the same run.

    python bench/activations.py --store cql://127.0.0.1:9042/dna_bench [-n 10000]
    python bench/activations.py --store cql://127.0.0.1:9042/dna_bench -n 100000 \\
        --activation both --rounds 2       # per-actor claims vs slot leases, alternated
    python bench/activations.py --store sqlite        # a temporary SQLite file
    python bench/activations.py --store sqlite:///tmp/act.db

On CQL, ``--activation`` picks the path: ``actor`` (one LWT per activation),
``slots`` (``?activation=slots``: one LWT per slot of the name space, then none;
in keyspace ``<keyspace>_slots``, as a keyspace never mixes the two) or ``both``,
alternated round by round in this one process so the machine's noise falls on
both. ``--actor kv`` makes each activation also commit one write (its first
fenced batch). Each round runs a fresh node, so the slot path's figure includes
taking every slot (about a second for 1,024 slots here). ``--gc both``
alternates the node's collector threshold (``Node(gc_threshold=...)``, its
default) with CPython's own 700 (``gc_threshold=None``). ``--no-gc`` turns
CPython's cyclic garbage collector off for the measured burst: at 100k live
activations its full collections scan millions of objects and, once the store
costs nothing, bound the rate (see docs/cluster-protocol.md, "Figures").
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import tempfile
import time
from typing import Any

import dna
from dna._gc import DEFAULT_THRESHOLD
from dna.examples import KVActor, Noop
from dna.store import open_store


def path_url(url: str, activation: str) -> str:
    """``url`` for the given CQL activation path (the slot path in its own keyspace)."""
    if activation == "actor":
        return url
    base, _, query = url.partition("?")
    return f"{base}_slots?activation=slots" + (f"&{query}" if query else "")


async def one_round(url: str, n: int, actor: str, window: int, no_gc: bool = False,
                    gc_threshold: int | None = DEFAULT_THRESHOLD) -> float:
    """Activations/s of ``n`` fresh actors, ``window`` first calls in flight at most (a
    burst of all ``n`` at once would run them all in one loop iteration, starving the
    node's own heartbeat past its lease)."""
    async with dna.Node(store=open_store(url), gc_threshold=gc_threshold) as node:
        run_id = f"{time.time_ns():x}"
        cls = KVActor if actor == "kv" else Noop
        names = iter(range(n))

        async def worker() -> None:
            for i in names:
                ref = node.ref(cls, f"act-{run_id}-{i}")
                await (ref.put("k", 1) if actor == "kv" else ref.ping())

        if no_gc:  # CPython's cyclic GC off for the burst (see --no-gc)
            gc.collect()
            gc.disable()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(window, n))))
        rate = n / (time.perf_counter() - t0)
        gc.enable()
        return rate


async def run(ns: argparse.Namespace) -> dict[str, Any]:
    url = ns.store
    if url == "sqlite":
        url = "sqlite://" + os.path.join(tempfile.mkdtemp(), "act.db")
    elif url == "cql":  # the older form
        url = f"cql://{ns.hosts}/{ns.keyspace}"
    out: dict[str, Any] = {"store": ns.store, "n": ns.n, "actor": ns.actor, "no_gc": ns.no_gc,
                           "window": ns.window}
    gcs = {"node": DEFAULT_THRESHOLD, "cpython": None}
    if ns.gc != "both":
        gcs = {ns.gc: gcs[ns.gc]}
    s = open_store(url)
    if s.kind != "cql":
        by_gc: dict[str, list[float]] = {g: [] for g in gcs}
        for _ in range(ns.rounds):
            for g, threshold in gcs.items():
                by_gc[g].append(await one_round(url, ns.n, ns.actor, ns.window, ns.no_gc,
                                                threshold))
        for g, rates_g in by_gc.items():
            out[f"activations_per_s_gc_{g}"] = max(rates_g)
        if len(gcs) == 2:
            out["gc_node_over_cpython"] = (out["activations_per_s_gc_node"]
                                           / out["activations_per_s_gc_cpython"])
        return out
    import _cql_raw  # the raw driver's pipelined claims, from bench/_cql_raw.py

    await s.open(f"raw-{time.time_ns()}")
    try:
        out["raw_claims_per_s"] = await _cql_raw.store_claims(s, min(ns.n, 20_000))  # type: ignore[arg-type]
    finally:
        await s.close()
    paths = ["actor", "slots"] if ns.activation == "both" else [ns.activation]
    runs = [(p, g) for p in paths for g in gcs]
    rates: dict[tuple[str, str], list[float]] = {pg: [] for pg in runs}
    for r in range(ns.rounds):
        for p, g in runs:
            rate = await one_round(path_url(url, p), ns.n, ns.actor, ns.window, ns.no_gc,
                                   gcs[g])
            rates[p, g].append(rate)
            print(f"round {r} {p} gc={g}: {rate:,.0f} activations/s", flush=True)
    for p, g in runs:
        name = p if len(gcs) == 1 else f"{p}_gc_{g}"
        out[f"{name}_activations_per_s"] = max(rates[p, g])
        out[f"{name}_rounds"] = rates[p, g]
    if len(paths) == 2 and len(gcs) == 1:
        out["slots_over_actor"] = out["slots_activations_per_s"] / out["actor_activations_per_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--store", default="sqlite", help="a store URL, or sqlite (temporary file)")
    ap.add_argument("--hosts", default="127.0.0.1:9042")
    ap.add_argument("--keyspace", default="dna_bench")
    ap.add_argument("--activation", choices=["actor", "slots", "both"], default="actor",
                    help="CQL only: per-actor claims, slot leases, or both alternated")
    ap.add_argument("--actor", choices=["noop", "kv"], default="noop",
                    help="noop: one call, no storage; kv: one put (a first commit) each")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--window", type=int, default=5_000, help="first calls in flight at most")
    ap.add_argument("--no-gc", action="store_true",
                    help="disable CPython's cyclic GC during the burst: with 100k live "
                    "activations its full collections, not the store, bound the rate")
    ap.add_argument("--gc", choices=["node", "cpython", "both"], default="node",
                    help="the node's collector threshold (Node's default), CPython's own "
                    "(gc_threshold=None), or both alternated round by round")
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    out = asyncio.run(run(ns))
    print(json.dumps(out) if ns.json else
          ", ".join(f"{k} {v:,.2f}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in out.items() if not k.endswith("_rounds")))


if __name__ == "__main__":
    main()

"""Activation rate: N fresh actors each get one call (so one claim each), against
the raw rate of N pipelined first claims on the same store, in the same run.

    python bench/activations.py --store cql://127.0.0.1:9042/dna_bench [-n 10000]
    python bench/activations.py --store sqlite        # a temporary SQLite file
    python bench/activations.py --store sqlite:///tmp/act.db
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from typing import Any

import dna
from dna.examples import Noop
from dna.store import open_store


async def run(ns: argparse.Namespace) -> dict[str, Any]:
    url = ns.store
    if url == "sqlite":
        url = "sqlite://" + os.path.join(tempfile.mkdtemp(), "act.db")
    elif url == "cql":  # the older form
        url = f"cql://{ns.hosts}/{ns.keyspace}"
    raw = None
    s = open_store(url)
    if s.kind == "cql":  # the raw driver's pipelined claims, from bench/_cql_raw.py
        import _cql_raw

        await s.open(f"raw-{time.time_ns()}")
        try:
            raw = await _cql_raw.store_claims(s, ns.n)  # type: ignore[arg-type]
        finally:
            await s.close()
    async with dna.Node(store=open_store(url)) as node:
        run_id = f"{time.time_ns():x}"
        refs = [node.ref(Noop, f"act-{run_id}-{i}") for i in range(ns.n)]
        t0 = time.perf_counter()
        await asyncio.gather(*(r.ping() for r in refs))
        rate = ns.n / (time.perf_counter() - t0)
    out = {"store": ns.store, "n": ns.n, "activations_per_s": rate}
    if raw is not None:
        out["raw_claims_per_s"] = raw
        out["ratio"] = rate / raw
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--store", default="sqlite", help="a store URL, or sqlite (temporary file)")
    ap.add_argument("--hosts", default="127.0.0.1:9042")
    ap.add_argument("--keyspace", default="dna_bench")
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    out = asyncio.run(run(ns))
    if ns.json:
        print(json.dumps(out))
    else:
        line = f"{ns.n:,} activations on {ns.store}: {out['activations_per_s']:,.0f}/s"
        if "raw_claims_per_s" in out:
            line += (f"; raw pipelined claims {out['raw_claims_per_s']:,.0f}/s; "
                     f"ratio {out['ratio']:.2f}")
        print(line)


if __name__ == "__main__":
    main()

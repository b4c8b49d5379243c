"""Activation rate: N fresh actors each get one call (so one claim each), against
the raw rate of N pipelined first claims on the same store, in the same run.

    python bench/activations.py --store cql --hosts 127.0.0.1:9042 [-n 10000]
    python bench/activations.py --store sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time

import dna
from dna.examples import Noop


async def run(ns: argparse.Namespace) -> dict[str, float]:
    def store() -> dna.Store:
        if ns.store == "cql":
            return dna.ScyllaStore(hosts=ns.hosts.split(","), keyspace=ns.keyspace)
        return dna.SQLiteStore(os.path.join(tempfile.mkdtemp(), "act.db"))

    raw = None
    s = store()
    if hasattr(s, "raw_claims"):
        await s.open(f"raw-{time.time_ns()}")
        try:
            raw = await s.raw_claims(ns.n)
        finally:
            await s.close()
    async with dna.Node(store=store()) as node:
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
    ap.add_argument("--store", choices=["sqlite", "cql"], default="sqlite")
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

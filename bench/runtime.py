"""Runtime micro-figures for issue targets, each build side by side in one run.

    python bench/runtime.py            # casts (C vs pure), call p50, idle activation memory
    python bench/runtime.py --json

Casts and calls go to ``dna.examples.Noop`` on a MemoryStore (no storage
cost); idle activations are of an actor without state on a real SQLite file.
Each figure runs in a fresh subprocess so the builds and the heaps don't mix.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CASTS = r"""
import asyncio, time, json, dna
from dna.examples import Noop
from dna.store.memory import MemoryStore
import dna._core as core
async def main(n):
    async with dna.Node(store=MemoryStore()) as node:
        ref = node.ref(Noop, "n")
        await ref.ping()
        tick = ref.tick
        t0 = time.perf_counter()
        for _ in range(n):
            await tick()
        await ref.ping()
        dt = time.perf_counter() - t0
    print(json.dumps({"compiled": core.COMPILED, "casts_per_s": n / dt}))
asyncio.run(main(N))
"""

CALLS = r"""
import asyncio, time, json, statistics, dna
from dna.examples import Noop
from dna.store.memory import MemoryStore
import dna._core as core
async def main(n):
    async with dna.Node(store=MemoryStore()) as node:
        ref = node.ref(Noop, "n")
        ping = ref.ping
        for _ in range(1000):
            await ping()
        lat = []
        pc = time.perf_counter
        for _ in range(n):
            t = pc()
            await ping()
            lat.append(pc() - t)
    lat.sort()
    print(json.dumps({"compiled": core.COMPILED, "call_p50_us": lat[len(lat)//2] * 1e6,
                      "call_p99_us": lat[int(len(lat)*0.99)] * 1e6,
                      "calls_per_s": n / sum(lat)}))
asyncio.run(main(N))
"""

IDLE = r"""
import asyncio, gc, json, os, tempfile, tracemalloc, dna
import dna._core as core
class Idle(dna.Actor):
    @dna.call
    def hello(self):
        return None
async def main(n):
    path = os.path.join(tempfile.mkdtemp(), "idle.db")
    async with dna.Node(store=dna.SQLiteStore(path)) as node:
        refs = [node.ref(Idle, str(i)) for i in range(n)]
        await refs[0].hello()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        sem = asyncio.Semaphore(2000)
        async def one(r):
            async with sem:
                await r.hello()
        await asyncio.gather(*(one(r) for r in refs[1:]))
        for r in refs:  # the refs and their senders are the caller's, not the activation's
            r.__dict__.clear()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        per = (after - before) / (n - 1)
        print(json.dumps({"compiled": core.COMPILED, "activations": node.activations,
                          "bytes_per_idle_activation": per}))
asyncio.run(main(N))
"""


def run(code: str, n: int, pure: bool) -> dict[str, float]:
    env = dict(os.environ)
    env.pop("DNA_NO_EXTENSIONS", None)
    if pure:
        env["DNA_NO_EXTENSIONS"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code.replace("N))", f"{n}))")],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--casts", type=int, default=2_000_000)
    ap.add_argument("--calls", type=int, default=50_000)
    ap.add_argument("--idle", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    c = run(CASTS, ns.casts, False)
    p = run(CASTS, ns.casts, True)
    call = run(CALLS, ns.calls, False)
    idle = run(IDLE, ns.idle, False)
    fig = {
        "casts_per_s_compiled": c["casts_per_s"],
        "casts_per_s_pure": p["casts_per_s"],
        "casts_ratio": c["casts_per_s"] / p["casts_per_s"],
        "call_p50_us": call["call_p50_us"],
        "call_p99_us": call["call_p99_us"],
        "calls_per_s": call["calls_per_s"],
        "idle_activations": idle["activations"],
        "bytes_per_idle_activation": idle["bytes_per_idle_activation"],
    }
    if ns.json:
        print(json.dumps(fig))
        return
    print(f"casts to a no-op handler: compiled {fig['casts_per_s_compiled']:,.0f}/s, "
          f"pure {fig['casts_per_s_pure']:,.0f}/s, ratio {fig['casts_ratio']:.2f}")
    print(f"in-process call round trip: p50 {fig['call_p50_us']:.1f} us, "
          f"p99 {fig['call_p99_us']:.1f} us ({fig['calls_per_s']:,.0f} calls/s)")
    print(f"{fig['idle_activations']:,} idle activations: "
          f"{fig['bytes_per_idle_activation']:,.0f} bytes each")


if __name__ == "__main__":
    main()

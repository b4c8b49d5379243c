"""The SQLite store's two commit paths side by side: apply (rows into the data table
before the ack) and log (one record per commit, applied later; ``commit=log``).

    python bench/logfirst.py side [--rounds 3] [-n 1000000]  # seed bench, alternating
    python bench/logfirst.py applier [-n 1000000]    # log ingest, then the applier's ceiling
    python bench/logfirst.py sustained [-n 10000000] # a long seed bench on the log path,
                                                     # bracketed by the applier's ceiling
                                                     # over as many rows [--ceiling-n N]
    python bench/logfirst.py recovery [-n 1000000]   # kill -9 with a backlog, then claim

Every figure comes from a fresh child process (peak RSS is the child's own).
Rounds alternate the paths so a noisy machine hurts each alike; ``side``
prints medians and the log/apply ratio. Prints one JSON object per mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
# "null": the memory store with commits that store nothing: the runtime's own ceiling
STORES = {"apply": "sqlite", "log": "sqlite?commit=log", "memory": "memory://",
          "null": "null"}


def child(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, __file__, *args], env=env, check=True,
                         capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------- child modes

async def one_bench(store: str, n: int, ceiling: bool) -> dict[str, Any]:
    from dna.bench import BenchConfig, run_bench

    if store == "null":  # no storage cost at all: what the runtime alone reaches
        from dna.store.memory import MemoryStore

        async def commit(self: Any, claim: Any, rows: Any) -> None:
            return None

        MemoryStore.commit = commit  # type: ignore[method-assign]
        store = "memory://"
    cfg = BenchConfig(n=n, store=store, ceiling=ceiling)
    if ceiling:  # measured apart, so that the CPU share below is the seed bench's own
        cfg.ceiling = False
        from dna.bench import raw_ingest

        ceiling_rate = await raw_ingest(cfg, f"{time.monotonic_ns():x}")
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    result = await run_bench(cfg)
    # CPU seconds of the event-loop thread per wall second: near 1.0, the loop is the bound
    result["loop_cpu_share"] = (time.thread_time() - cpu0) / (time.perf_counter() - wall0)
    if ceiling:
        result["ceiling_rows_per_s"] = ceiling_rate
    return result


async def one_applier(n: int, batch: int) -> dict[str, Any]:
    """Append n rows (one actor, batches of ``batch``) with the applier held back
    (the bound twice n: below half of it nothing is applied eagerly),
    then apply the whole log: the append rate and the applier's own ceiling."""
    from dna._core import pack
    from dna.bench import peak_rss_mib
    from dna.store import ActorId
    from dna.store.sqlite import SQLiteStore

    tmp = Path(tempfile.mkdtemp(prefix="dna-logfirst-"))
    store = SQLiteStore(tmp / "a.db", commit="log", log_max_rows=2 * (n + batch),
                        apply_idle_ms=None)
    value = pack(b"test")
    await store.open("applier")
    try:
        claim = await store.claim(ActorId("bench", "applier", "a"))
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            await store.commit(claim, [("kv", str(i), value) for i in range(start, start + batch)])
        append = time.perf_counter() - t0
        t0 = time.perf_counter()
        applied = await store.apply_log()
        apply = time.perf_counter() - t0
    finally:
        await store.close()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return {"n": n, "append_rows_per_s": n / append, "applied": applied,
            "applier_rows_per_s": applied / apply, "peak_rss_mib": peak_rss_mib()}


async def one_writer(path: str, n: int, batch: int) -> None:
    """Commit n rows on the log path with the applier held back, say so, then wait
    to be killed (recovery's victim)."""
    from dna._core import pack
    from dna.store import ActorId
    from dna.store.sqlite import SQLiteStore

    store = SQLiteStore(path, commit="log", log_max_rows=2 * (n + batch), apply_idle_ms=None)
    await store.open("victim")
    claim = await store.claim(ActorId("bench", "recovery", "a"))
    value = pack(b"test")
    for start in range(0, n, batch):
        await store.commit(claim, [("kv", str(i), value) for i in range(start, start + batch)])
    print(json.dumps({"acked": n, "backlog": store.log_stats()["backlog"]}), flush=True)
    await asyncio.Event().wait()


async def recover(path: str, n: int) -> dict[str, Any]:
    from dna.store import ActorId
    from dna.store.sqlite import SQLiteStore

    t0 = time.perf_counter()
    store = SQLiteStore(path, commit="log", apply_idle_ms=None)
    await store.open("heir")
    opened = time.perf_counter() - t0
    try:
        backlog = store.log_stats()["backlog"]
        t1 = time.perf_counter()
        claim = await store.claim(ActorId("bench", "recovery", "a"))  # replays the backlog
        claimed = time.perf_counter() - t1
        last = await store.read(claim, "kv", str(n - 1))
        rows = len(await store.list(claim, "kv", "", limit=n + 10))
    finally:
        await store.close()
    return {"backlog_rows": backlog, "open_s": opened, "claim_s": claimed,
            "replay_rows_per_s": backlog / claimed, "last_row_found": last is not None,
            "rows_after_claim": rows}


# ---------------------------------------------------------------- parent modes

def side(rounds: int, n: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in STORES}
    for _ in range(rounds):
        for name in STORES:  # alternating: apply, log, memory, apply, ...
            runs[name].append(child(["_bench", STORES[name], str(n)]))
    med = {name: {key: statistics.median(r[key] for r in rs)
                  for key in ("puts_per_s", "ceiling_rows_per_s", "peak_rss_mib",
                              "loop_cpu_share", "commit_p50_ms")}
           for name, rs in runs.items()}
    return {"n": n, "rounds": rounds, "median": med,
            "log_over_apply": med["log"]["puts_per_s"] / med["apply"]["puts_per_s"],
            "log_over_memory": med["log"]["puts_per_s"] / med["memory"]["puts_per_s"],
            "log_over_null": med["log"]["puts_per_s"] / med["null"]["puts_per_s"],
            "puts_per_s": {k: [round(r["puts_per_s"]) for r in rs] for k, rs in runs.items()},
            "log_over_apply_per_round": [round(lg["puts_per_s"] / ap["puts_per_s"], 2)
                                         for lg, ap in zip(runs["log"], runs["apply"],
                                                           strict=True)],
            "log_over_null_per_round": [round(lg["puts_per_s"] / nu["puts_per_s"], 2)
                                        for lg, nu in zip(runs["log"], runs["null"], strict=True)]}


def sustained(n: int, ceiling_n: int) -> dict[str, Any]:
    """The applier's ceiling, a long seed bench on the log path, the ceiling again:
    the long run's rate over the mean ceiling (the machine drifts; both bracket it).
    The ceiling applies ``ceiling_n`` rows, by default as many as the run puts: on a
    fresh file, 1M rows apply faster than 10M (a shallower B-tree)."""
    before = child(["_applier", str(ceiling_n)])
    run = child(["_sustained", str(n)])
    after = child(["_applier", str(ceiling_n)])
    ceiling = (before["applier_rows_per_s"] + after["applier_rows_per_s"]) / 2
    return {"n": n, "puts_per_s": run["puts_per_s"], "peak_rss_mib": run["peak_rss_mib"],
            "ceiling_rows": ceiling_n,
            "applier_ceiling_rows_per_s": [before["applier_rows_per_s"],
                                           after["applier_rows_per_s"]],
            "over_ceiling": run["puts_per_s"] / ceiling, "seconds": run["seconds"],
            "applier_rows_per_s_in_run": run["applier_rows_per_s_in_run"],
            "over_applier_in_run": run["puts_per_s"] / run["applier_rows_per_s_in_run"],
            "log": run["log"], "loop_cpu_share": run["loop_cpu_share"],
            "commit_p99_ms": run["commit_p99_ms"]}


def recovery(n: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="dna-recovery-"))
    path = str(tmp / "r.db")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, __file__, "_victim", path, str(n)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the victim has every commit acked
        acked = json.loads(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    result = child(["_recover", path, str(n)])
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return {**acked, **result}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=["side", "applier", "sustained", "recovery", "_bench",
                                    "_victim", "_recover", "_sustained", "_applier"])
    p.add_argument("args", nargs="*")
    p.add_argument("-n", type=int, default=None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ceiling-n", type=int, default=None,
                   help="sustained: rows the applier's ceiling applies (default: -n)")
    ns = p.parse_args()
    if ns.mode == "_bench":
        print(json.dumps(asyncio.run(one_bench(ns.args[0], int(ns.args[1]), ceiling=True))))
    elif ns.mode == "_victim":
        asyncio.run(one_writer(ns.args[0], int(ns.args[1]), 5000))
    elif ns.mode == "_recover":
        print(json.dumps(asyncio.run(recover(ns.args[0], int(ns.args[1])))))
    elif ns.mode == "side":
        print(json.dumps(side(ns.rounds, ns.n or 1_000_000), indent=1))
    elif ns.mode == "applier":
        print(json.dumps(asyncio.run(one_applier(ns.n or 1_000_000, 5000))))
    elif ns.mode == "_sustained":
        import dna.bench

        made: list[Any] = []
        make = dna.bench.make_store

        def keep(*a: Any, **kw: Any) -> Any:
            made.append(make(*a, **kw)[0])
            return made[-1], None

        dna.bench.make_store = keep  # type: ignore[assignment]
        tmp = tempfile.mkdtemp(prefix="dna-sustained-")
        result = asyncio.run(one_bench(f"sqlite://{tmp}/s.db?commit=log", int(ns.args[0]),
                                       ceiling=False))
        stats = made[-1].log_stats()
        result["log"] = stats  # the applier's own rate during the run, and what it left
        result["applier_rows_per_s_in_run"] = stats["applied"] / max(stats["apply_seconds"], 1e-9)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        print(json.dumps(result))
    elif ns.mode == "_applier":
        print(json.dumps(asyncio.run(one_applier(int(ns.args[0]), 5000))))
    elif ns.mode == "sustained":
        n = ns.n or 10_000_000
        print(json.dumps(sustained(n, ns.ceiling_n or n), indent=1))
    else:
        print(json.dumps(recovery(ns.n or 1_000_000), indent=1))


if __name__ == "__main__":
    main()

"""Raw LWT and SERIAL-read rates of two CQL servers side by side (e.g. one with
``paxos_variant: v1``, one with ``v2``): what a per-actor fence costs.

    python bench/paxos_rates.py 127.0.0.1:9042 127.0.0.1:9043 [-n 20000] [--rounds 2]

Per server and round, pipelined (``--concurrency`` in flight, the driver's own
callbacks, no asyncio): first LWTs of fresh partitions (``IF e = null``), fence
LWTs of existing partitions (``IF e <= S``, the slot path's takeover fence),
SERIAL reads and QUORUM reads of the same partitions. Rounds alternate servers so
that the machine's noise falls on both.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster


def pipelined(session: Any, stmt: Any, params: list[tuple[Any, ...]], concurrency: int) -> float:
    """Requests/s of ``stmt`` over ``params``, ``concurrency`` in flight."""
    lock = threading.Lock()
    done = threading.Event()
    it = iter(params)
    left = [len(params)]
    errors: list[BaseException] = []

    def next_one() -> None:
        with lock:
            p = next(it, None)
        if p is None:
            return
        f = session.execute_async(stmt, p)
        f.add_callbacks(finished, failed)

    def finished(_: Any) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            done.set()
        else:
            next_one()

    def failed(exc: BaseException) -> None:
        errors.append(exc)
        finished(None)

    t0 = time.perf_counter()
    for _ in range(min(concurrency, len(params))):
        next_one()
    done.wait()
    dt = time.perf_counter() - t0
    if errors:
        print(f"  {len(errors)} errors, first {errors[0]!r}")
    return len(params) / dt


def one(host: str, n: int, concurrency: int) -> dict[str, float]:
    h, _, port = host.partition(":")
    cluster = Cluster([h], port=int(port or 9042))
    s = cluster.connect()
    ks = "paxos_rates"
    s.execute(f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
              "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    s.execute(f"CREATE TABLE IF NOT EXISTS {ks}.t (k text, c text, e bigint static, "
              "v blob, PRIMARY KEY (k, c))")
    first = s.prepare(f"UPDATE {ks}.t SET e = ? WHERE k = ? IF e = null")
    fence = s.prepare(f"UPDATE {ks}.t SET e = ? WHERE k = ? IF e <= ?")
    serial = s.prepare(f"SELECT e FROM {ks}.t WHERE k = ? LIMIT 1")
    serial.consistency_level = ConsistencyLevel.SERIAL
    quorum = s.prepare(f"SELECT e FROM {ks}.t WHERE k = ? LIMIT 1")
    quorum.consistency_level = ConsistencyLevel.QUORUM
    for st in (first, fence):
        st.consistency_level = ConsistencyLevel.QUORUM
        st.serial_consistency_level = ConsistencyLevel.SERIAL
    run = uuid.uuid4().hex[:8]
    keys = [f"{run}-{i}" for i in range(n)]
    out = {
        "first_lwt_per_s": pipelined(s, first, [(1, k) for k in keys], concurrency),
        "fence_lwt_per_s": pipelined(s, fence, [(2, k, 2) for k in keys], concurrency),
        "serial_read_per_s": pipelined(s, serial, [(k,) for k in keys], concurrency),
        "quorum_read_per_s": pipelined(s, quorum, [(k,) for k in keys], concurrency),
    }
    cluster.shutdown()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("hosts", nargs="+", help="host:port of each server to compare")
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=256)
    ns = ap.parse_args()
    results: dict[str, list[dict[str, float]]] = {h: [] for h in ns.hosts}
    for r in range(ns.rounds):
        for h in ns.hosts:
            got = one(h, ns.n, ns.concurrency)
            results[h].append(got)
            print(f"round {r} {h}: " + ", ".join(f"{k} {v:,.0f}" for k, v in got.items()),
                  flush=True)
    best = {h: {k: max(x[k] for x in rs) for k in rs[0]} for h, rs in results.items()}
    print(json.dumps(best))


if __name__ == "__main__":
    main()

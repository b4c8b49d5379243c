"""Failover time: kill -9 of an actor's owner to the first successful call on its new owner.

    python bench/failover.py [--store sqlite|cql://H:P/KEYSPACE] [--rounds 5]

Two `dna node` processes share a store; this process is a client node
(host_actors=False) that calls the actor, kills its owner, and calls until a
survivor answers. On SQLite liveness is exact (an OS file lock), so there is no
lease to wait for; on CQL the store's lease applies (printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dna
from dna.examples import KVActor
from dna.store import open_store


def start_node(args: list[str], secret_file: Path) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen(
        [sys.executable, "-m", "dna", "node", "--listen", "127.0.0.1:0",
         "--secret-file", str(secret_file), *args],
        stdout=subprocess.PIPE, text=True,
    )
    assert p.stdout is not None
    line = p.stdout.readline()
    return p, line.split()[2]  # "dna node <id> listening on <addr>"


async def one_round(store_args: list[str], make_store: object, secret_file: Path) -> float:
    procs = dict(start_node(store_args, secret_file)[::-1] for _ in range(2))
    secret = secret_file.read_bytes()  # noqa: ASYNC240 (a few bytes, before any timing)
    try:
        node = dna.Node(store=make_store(), listen="127.0.0.1:0",  # type: ignore[operator]
                        secret=secret, host_actors=False, call_timeout=2.0)
        async with node:
            key = f"failover-{time.time_ns()}"
            ref = node.ref(KVActor, key)
            await ref.put("k", 1)
            owner, _ = await node.store.owner_of(dna.ActorId("default", KVActor.type_name, key))
            victim = procs[owner]
            t0 = time.perf_counter()
            victim.send_signal(signal.SIGKILL)
            while True:
                try:
                    assert await ref.get.with_timeout(1.0)("k") == 1
                    break
                except dna.errors.DNAError:
                    await asyncio.sleep(0.005)
            return time.perf_counter() - t0
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="sqlite",
                    help="sqlite (a fresh file per round) or a cql:// store URL")
    ap.add_argument("--hosts", default="127.0.0.1:9042", help="with --store cql (older form)")
    ap.add_argument("--keyspace", default="dna_failover", help="with --store cql (older form)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dna-failover-"))
    secret_file = work / "secret"
    secret_file.write_bytes(secrets.token_hex(16).encode())
    times = []
    for r in range(ns.rounds):
        url = ns.store
        if url == "sqlite":
            url = "sqlite://" + str(work / f"f{r}.db")
        elif url == "cql":
            url = f"cql://{ns.hosts}/{ns.keyspace}"
        args = ["--store", url]
        make = lambda url=url: open_store(url)  # noqa: E731
        times.append(asyncio.run(one_round(args, make, secret_file)))
    fig = {"store": ns.store, "rounds": ns.rounds,
           "failover_ms_median": statistics.median(times) * 1e3,
           "failover_ms_max": max(times) * 1e3, "call_timeout_s": 2.0, "retry_sleep_ms": 5}
    print(json.dumps(fig) if ns.json else
          f"failover ({ns.store}): median {fig['failover_ms_median']:.0f} ms, "
          f"max {fig['failover_ms_max']:.0f} ms over {ns.rounds} rounds (kill -9 to first "
          "successful call; client retries every 5 ms, per-try timeout 1 s)")
    os.system(f"rm -rf {work}")


if __name__ == "__main__":
    main()

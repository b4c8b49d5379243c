"""Failover time: kill -9 of an actor's owner to the first successful call on its new owner.

    python bench/failover.py [--store sqlite|cql://H:P/KEYSPACE] [--rounds 5]
    python bench/failover.py --store "cql://127.0.0.1:9042/KS?lease=3&heartbeat_interval=0.3" \
        --actors 100000 --activation both [--actor kv]

With ``--actors N`` (N > 1) one node holds N actors when it is killed: a victim
node starts alone and a client node activates N actors on it (one call each),
then a survivor starts, the victim is killed, and the client calls all N again
until each answers. Printed: time to the first answer and to the last one,
from the kill. ``--activation both`` (CQL) runs the per-actor path and the slot
path (``?activation=slots``, in keyspace ``<KS>_slots``) one after the other in
this run. ``--actor kv``: each actor holds one stored value, checked on every
answer (on the slot path its first read after the takeover is a fence LWT).

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


async def many_round(
    url: str, n: int, actor: str, window: int, secret_file: Path, try_timeout: float = 2.0
) -> dict[str, float]:
    """Kill -9 of a node holding ``n`` actors: seconds to the first and the last answer."""
    from dna.examples import Noop

    secret = secret_file.read_bytes()  # noqa: ASYNC240
    victim, _ = start_node(["--store", url], secret_file)
    survivor = None
    try:
        node = dna.Node(store=open_store(url), listen="127.0.0.1:0", secret=secret,
                        host_actors=False, call_timeout=5.0)
        async with node:
            run = f"fo-{time.time_ns():x}"
            cls = KVActor if actor == "kv" else Noop

            async def call(i: int) -> None:
                ref = node.ref(cls, f"{run}-{i}")
                if actor == "kv":
                    assert await ref.get.with_timeout(try_timeout)("k") == i
                else:
                    await ref.ping.with_timeout(try_timeout)()

            async def fill(i: int) -> None:
                ref = node.ref(cls, f"{run}-{i}")
                while True:
                    try:
                        await (ref.put("k", i) if actor == "kv" else ref.ping())
                        return
                    except dna.errors.DNAError:
                        await asyncio.sleep(0.05)

            t0 = time.perf_counter()
            await windowed(fill, n, window)
            setup = time.perf_counter() - t0
            survivor, sid = start_node(["--store", url], secret_file)
            while True:  # the client sees the survivor alive before the kill
                recs = {r.node_id: r for r in await node.store.nodes()}
                if sid in recs and recs[sid].alive:
                    break
                await asyncio.sleep(0.1)
            await node.cluster.refresh_peers()
            first: list[float] = []
            answered: list[float] = []  # when each actor answered again
            failed: dict[str, list[float]] = {}  # failed tries by error, when (from the kill)

            async def again(i: int) -> None:
                while True:
                    try:
                        await call(i)
                        if not first:
                            first.append(time.perf_counter())
                        answered.append(time.perf_counter())
                        return
                    except dna.errors.DNAError as exc:
                        failed.setdefault(type(exc).__name__, []).append(
                            time.perf_counter() - t0)
                        await asyncio.sleep(0.05)

            t0 = time.perf_counter()
            victim.send_signal(signal.SIGKILL)
            await windowed(again, n, window)
            last = time.perf_counter() - t0
            q = statistics.quantiles([a - t0 for a in answered], n=10)
            return {"setup_s": setup, "first_answer_s": first[0] - t0,
                    "tenth_answered_s": q[0], "half_answered_s": q[4],
                    "nine_tenths_answered_s": q[8], "all_answered_s": last,
                    # failed tries per error: how many, and how many after the first answer
                    "failed_tries": {k: [len(v), sum(t > first[0] - t0 for t in v)]
                                     for k, v in failed.items()}}
    finally:
        for p in (victim, survivor):
            if p is not None:
                p.kill()
                p.wait()
                if p.stdout is not None:
                    p.stdout.close()


async def windowed(fn: object, n: int, window: int) -> None:
    """``fn(i)`` for every i < n, ``window`` at a time."""
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await fn(i)  # type: ignore[operator]

    await asyncio.gather(*(worker() for _ in range(min(n, window))))


def slots_url(url: str) -> str:
    base, _, query = url.partition("?")
    return f"{base}_slots?activation=slots" + (f"&{query}" if query else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default="sqlite",
                    help="sqlite (a fresh file per round) or a cql:// store URL")
    ap.add_argument("--hosts", default="127.0.0.1:9042", help="with --store cql (older form)")
    ap.add_argument("--keyspace", default="dna_failover", help="with --store cql (older form)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--actors", type=int, default=1, help="actors on the killed node")
    ap.add_argument("--activation", choices=["actor", "slots", "both"], default="actor",
                    help="with --actors > 1 on CQL: the activation path(s) to run")
    ap.add_argument("--actor", choices=["noop", "kv"], default="noop",
                    help="with --actors > 1: stateless actors, or one stored value each")
    ap.add_argument("--window", type=int, default=2_000, help="calls in flight at most")
    ap.add_argument("--try-timeout", type=float, default=2.0,
                    help="with --actors > 1: seconds one call may take before it is retried "
                    "(a call to the killed node waits this long: with a small window these "
                    "waits, not the store, bound the time to the last answer)")
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dna-failover-"))
    secret_file = work / "secret"
    secret_file.write_bytes(secrets.token_hex(16).encode())
    secret_file.chmod(0o600)  # `dna node` refuses a secret others may read
    if ns.actors > 1:
        paths = ["actor", "slots"] if ns.activation == "both" else [ns.activation]
        out: dict[str, object] = {"store": ns.store, "actors": ns.actors, "actor": ns.actor}
        for path in paths:
            url = ns.store if path == "actor" else slots_url(ns.store)
            got = asyncio.run(many_round(url, ns.actors, ns.actor, ns.window, secret_file,
                                         ns.try_timeout))
            out[path] = got
            print(f"{path}: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in got.items()), flush=True)
        print(json.dumps(out))
        os.system(f"rm -rf {work}")
        return
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

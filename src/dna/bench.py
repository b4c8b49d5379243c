"""The seed benchmark: N cast puts into K actors, then one gated put each.

Timed end to end: when it returns, every write is durable. ``ceiling`` first
measures the raw store ingest of the same rows in batches of the same size
(no actors) so the runtime's overhead shows as a ratio.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._core import pack
from .examples import KVActor, Noop
from .node import Node
from .store import ActorId, Row, Store

__all__ = ["BenchConfig", "make_store", "run_bench"]


@dataclass
class BenchConfig:
    n: int = 1_000_000
    actors: int = 1
    store: str = "sqlite"
    path: str | None = None
    hosts: list[str] = field(default_factory=list)
    keyspace: str = "dna_bench"
    ceiling: bool = False
    progress: bool = False
    max_batch: int = 5_000
    mailbox_size: int = 10_000
    remote: bool = False


def make_store(cfg: BenchConfig, suffix: str = "") -> tuple[Store, Path | None]:
    """A store for the bench, and a temporary directory to remove afterwards (or None)."""
    if cfg.store == "sqlite":
        from .store.sqlite import SQLiteStore

        tmp: Path | None = None
        if cfg.path:
            path = Path(cfg.path + suffix)
        else:
            tmp = Path(tempfile.mkdtemp(prefix="dna-bench-"))
            path = tmp / f"bench{suffix}.db"
        return SQLiteStore(str(path)), tmp
    if cfg.store == "memory":
        from .store.memory import MemoryStore

        return MemoryStore(), None
    if cfg.store == "cql":
        from .store.scylla import ScyllaStore

        if not cfg.hosts:
            raise SystemExit("dna bench --store cql needs --hosts HOST:PORT")
        return ScyllaStore(hosts=cfg.hosts, keyspace=cfg.keyspace), None
    raise SystemExit(f"unknown store {cfg.store!r} (sqlite, cql, memory)")


def peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


async def raw_ingest(cfg: BenchConfig, run_id: str) -> float:
    """Rows/s of the store alone: the bench's rows, committed in batches of max_batch.

    On CQL this is the raw driver (fenced single-partition batches of pre-serialised
    rows, no store code); on SQLite the store's commit path without actors.
    """
    store, tmp = make_store(cfg, ".ceiling")
    raw = getattr(store, "raw_fenced_ingest", None)
    if raw is not None:
        await store.open(f"ceiling-{run_id}")
        try:
            rate: float = await raw(cfg.n, cfg.max_batch, actors=cfg.actors)
        finally:
            await store.close()
        return rate
    value = pack(b"test")
    try:
        await store.open(f"ceiling-{run_id}")
        try:
            claims = [
                await store.claim(ActorId("bench", "ceiling", f"{run_id}-{j}"))
                for j in range(cfg.actors)
            ]
            per = cfg.n // cfg.actors
            t0 = time.perf_counter()
            for start in range(0, per, cfg.max_batch):
                stop = min(per, start + cfg.max_batch)
                rows: list[Row] = [("kv", str(i), value) for i in range(start, stop)]
                await asyncio.gather(*(store.commit(c, rows) for c in claims))
            elapsed = time.perf_counter() - t0
        finally:
            await store.close()
    finally:
        _cleanup(tmp)
    return (per * cfg.actors) / elapsed


def _cleanup(tmp: Path | None) -> None:
    if tmp is not None:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


async def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the seed bench and return its figures."""
    run_id = f"{int(time.time() * 1000):x}"
    result: dict[str, Any] = {"store": cfg.store, "n": cfg.n, "actors": cfg.actors}
    if cfg.ceiling:
        result["ceiling_rows_per_s"] = await raw_ingest(cfg, run_id)
    store, tmp = make_store(cfg)
    try:
        node = Node(store=store, max_batch=cfg.max_batch, mailbox_size=cfg.mailbox_size)
        async with node:
            refs = [node.ref(KVActor, f"bench-{run_id}-{j}") for j in range(cfg.actors)]
            for ref in refs:  # activation (a claim) is not part of the figure
                await ref.get("warm-up")
            elapsed = await _drive(cfg, refs)
            stats = node.stats
    finally:
        _cleanup(tmp)
    result.update(
        seconds=elapsed,
        puts_per_s=cfg.n / elapsed,
        batches=stats.batches,
        mean_batch=stats.messages / max(1, stats.batches),
        max_batch=stats.max_batch,
        commits=stats.commits,
        commit_p50_ms=stats.percentile(50) * 1000,
        commit_p99_ms=stats.percentile(99) * 1000,
        peak_rss_mib=peak_rss_mib(),
    )
    if cfg.ceiling:
        result["ratio"] = result["puts_per_s"] / result["ceiling_rows_per_s"]
    return result


async def _drive(cfg: BenchConfig, refs: list[Any]) -> float:
    n = cfg.n
    k = len(refs)
    casts = [ref.put_cast for ref in refs]
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="put", unit_scale=True, file=sys.stderr, leave=False)
    step = 1 << 15
    t0 = time.perf_counter()
    if k == 1:
        put = casts[0]
        for base in range(0, n, step):
            for i in range(base, min(n, base + step)):
                await put(str(i), b"test")
            if bar is not None:
                bar.update(min(step, n - base))
    else:
        for base in range(0, n, step):
            for i in range(base, min(n, base + step)):
                await casts[i % k](str(i), b"test")
            if bar is not None:
                bar.update(min(step, n - base))
    await asyncio.gather(*(ref.put(str(n), b"test") for ref in refs))
    elapsed = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    return elapsed


async def run_remote(cfg: BenchConfig) -> dict[str, Any]:
    """The seed bench in process, then with the actor in a ``dna node`` process and the
    sender here, over loopback TCP; reports both and their ratio."""
    import os
    import secrets

    inproc = await run_bench(BenchConfig(**{**cfg.__dict__, "remote": False, "ceiling": False}))
    store, tmp = make_store(cfg, ".remote")
    work = Path(tempfile.mkdtemp(prefix="dna-remote-"))
    secret_file = work / "secret"
    secret_file.write_bytes(secrets.token_hex(16).encode())
    cmd = [sys.executable, "-m", "dna", "node", "--listen", "127.0.0.1:0",
           "--secret-file", str(secret_file), "--store", cfg.store]
    if cfg.store == "sqlite":
        cmd += ["--path", str(getattr(store, "path", ""))]
    else:
        cmd += ["--hosts", ",".join(cfg.hosts), "--keyspace", cfg.keyspace]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, env=dict(os.environ)
    )
    try:
        assert proc.stdout is not None
        line = (await proc.stdout.readline()).decode()
        if "listening on" not in line:
            raise SystemExit(f"the node process did not start: {line!r}")
        run_id = f"{int(time.time() * 1000):x}"
        node = Node(store=store, listen="127.0.0.1:0", secret=secret_file.read_bytes(),
                    host_actors=False, max_batch=cfg.max_batch, mailbox_size=cfg.mailbox_size)
        async with node:
            refs = [node.ref(KVActor, f"remote-{run_id}-{j}") for j in range(cfg.actors)]
            for ref in refs:
                await ref.get("warm-up")
            ping = node.ref(Noop, f"remote-{run_id}").ping  # round trip, no storage
            for _ in range(200):
                await ping()
            rtt = []
            for _ in range(5000):
                t = time.perf_counter()
                await ping()
                rtt.append(time.perf_counter() - t)
            elapsed = await _drive(cfg, refs)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        _cleanup(tmp)
        _cleanup(work)
    rtt.sort()
    puts = cfg.n / elapsed
    return {
        "store": cfg.store, "n": cfg.n, "actors": cfg.actors, "remote": True,
        "seconds": elapsed, "puts_per_s": puts,
        "inprocess_puts_per_s": inproc["puts_per_s"], "ratio": puts / inproc["puts_per_s"],
        "remote_call_p50_us": rtt[len(rtt) // 2] * 1e6,
        "remote_call_p99_us": rtt[int(len(rtt) * 0.99)] * 1e6,
        "batches": None, "mean_batch": None, "peak_rss_mib": peak_rss_mib(),
    }

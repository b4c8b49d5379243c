"""The seed benchmark: N cast puts into K actors, then one gated put each.

Timed end to end: when it returns, every write is durable. ``ceiling`` first
measures the raw store ingest of the same rows in batches of the same size
(no actors) so the runtime's overhead shows as a ratio: on SQLite and memory
the store's own commit path; on CQL the raw driver, whose code lives with the
bench scripts (``bench/_cql_raw.py`` of a source checkout, not the package).
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._core import pack
from .examples import KVActor, Noop
from .node import Node
from .store import ActorId, Row, Store, open_store

__all__ = ["BenchConfig", "make_store", "run_bench"]


@dataclass
class BenchConfig:
    n: int = 1_000_000
    actors: int = 1
    store: str = "sqlite"  # a store URL, or "sqlite": a temporary SQLite file
    path: str | None = None  # with store "sqlite": this file instead of a temporary one
    ceiling: bool = False
    progress: bool = False
    max_batch: int = 5_000
    mailbox_size: int = 10_000
    remote: bool = False


def bench_url(cfg: BenchConfig, suffix: str = "") -> tuple[str, Path | None]:
    """The store URL of one bench run (``suffix`` keeps SQLite files apart), and a
    temporary directory to remove afterwards (or None)."""
    url, _, options = cfg.store.partition("?")  # "sqlite?commit=log": a temporary file too
    if url != "sqlite":
        url = cfg.store
    tmp: Path | None = None
    if url == "sqlite":
        if cfg.path:
            path = cfg.path
        else:
            tmp = Path(tempfile.mkdtemp(prefix="dna-bench-"))
            path = str(tmp / "bench.db")
        url = "sqlite://" + quote(path, safe="/") + ("?" + options if options else "")
    if url.startswith("sqlite://") and suffix:
        url, _, query = url.partition("?")
        url += quote(suffix, safe="/") + ("?" + query if query else "")
    return url, tmp


def make_store(cfg: BenchConfig, suffix: str = "") -> tuple[Store, Path | None]:
    """A store for the bench, and a temporary directory to remove afterwards (or None)."""
    url, tmp = bench_url(cfg, suffix)
    try:
        return open_store(url), tmp
    except (ValueError, ImportError) as exc:
        _cleanup(tmp)
        raise SystemExit(f"dna bench: {exc}") from None


def peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


async def raw_ingest(cfg: BenchConfig, run_id: str) -> float:
    """Rows/s of the store alone: the bench's rows, committed in batches of max_batch.

    On CQL this is the raw driver (fenced single-partition batches of pre-serialised
    rows, no store code); on SQLite the store's commit path without actors.
    """
    store, tmp = make_store(cfg, ".ceiling")
    if store.kind == "cql":
        return await _cql_ceiling(store, cfg)
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


def _load_cql_raw() -> Any:
    """``bench/_cql_raw.py`` of a source checkout (or of ``$DNA_BENCH_DIR``)."""
    import importlib.util

    where = os.environ.get("DNA_BENCH_DIR") or str(Path(__file__).resolve().parents[2] / "bench")
    path = Path(where) / "_cql_raw.py"
    spec = importlib.util.spec_from_file_location("dna_bench_cql_raw", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise SystemExit(
            f"dna bench --ceiling on CQL measures the raw driver with bench/_cql_raw.py of a "
            f"source checkout, not found at {path}: run it from the checkout (or set "
            "DNA_BENCH_DIR to its bench/ directory), or use: python bench/cql_ingest.py"
        )
    raw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(raw)
    return raw


async def _cql_ceiling(store: Store, cfg: BenchConfig) -> float:
    """The raw driver's fenced ingest (the CQL store's ceiling)."""
    raw = _load_cql_raw()
    await store.open(f"ceiling-{os.getpid()}-{int(time.time() * 1000):x}")
    try:
        rate: float = await raw.store_fenced_ingest(store, cfg.n, cfg.max_batch, actors=cfg.actors)
    finally:
        await store.close()
    return rate


class _Progress:
    """A one-line progress bar on stderr (no dependency)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.t0 = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        rate = self.done / max(1e-9, time.perf_counter() - self.t0)
        width = 30
        fill = width * self.done // max(1, self.total)
        sys.stderr.write(
            f"\r[{'#' * fill}{'.' * (width - fill)}] {self.done:,}/{self.total:,} put "
            f"{rate:,.0f}/s"
        )
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\r" + " " * 78 + "\r")
        sys.stderr.flush()


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
        bar = _Progress(n)
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
    import secrets

    inproc = await run_bench(BenchConfig(**{**cfg.__dict__, "remote": False, "ceiling": False}))
    url, tmp = bench_url(cfg, ".remote")
    store = open_store(url)
    work = Path(tempfile.mkdtemp(prefix="dna-remote-"))
    secret_file = work / "secret"
    secret_file.touch(mode=0o600)  # dna node refuses a secret file others can read
    secret_file.write_bytes(secrets.token_hex(16).encode())
    cmd = [sys.executable, "-m", "dna", "node", "--listen", "127.0.0.1:0",
           "--secret-file", str(secret_file), "--store", url]
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
            rtt, echo = await _round_trips(ping)
            cpu = _cpu_seconds(proc.pid), time.process_time()
            elapsed = await _drive(cfg, refs)
            cpu_server, cpu_client = _cpu_seconds(proc.pid) - cpu[0], time.process_time() - cpu[1]
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        _cleanup(tmp)
        _cleanup(work)
    puts = cfg.n / elapsed
    p50 = rtt[len(rtt) // 2] * 1e6
    echo_p50 = echo[len(echo) // 2] * 1e6
    return {
        "store": cfg.store, "n": cfg.n, "actors": cfg.actors, "remote": True,
        "seconds": elapsed, "puts_per_s": puts,
        "inprocess_puts_per_s": inproc["puts_per_s"], "ratio": puts / inproc["puts_per_s"],
        "remote_call_p50_us": p50,
        "remote_call_p99_us": rtt[int(len(rtt) * 0.99)] * 1e6,
        "echo_p50_us": echo_p50, "call_vs_echo": p50 / echo_p50,
        "client_cpu_us_per_put": cpu_client / cfg.n * 1e6,
        "server_cpu_us_per_put": cpu_server / cfg.n * 1e6,
        "batches": None, "mean_batch": None, "peak_rss_mib": peak_rss_mib(),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_ECHO = """
import asyncio, sys
class Echo(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d): self.t.write(d)
async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


async def _round_trips(ping: Any, n: int = 5000) -> tuple[list[float], list[float]]:
    """Sorted seconds of ``n`` remote calls, and of ``n`` plain asyncio TCP echoes of 16
    bytes to another process on loopback (the scale the call is judged against),
    measured alternately in rounds so that a noisy machine hurts both alike."""
    loop = asyncio.get_running_loop()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _ECHO, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stdin is not None
    port = int(await proc.stdout.readline())
    waiter: list[asyncio.Future[None]] = []

    class Client(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            if waiter and not waiter[0].done():
                waiter[0].set_result(None)

    transport, _ = await loop.create_connection(Client, "127.0.0.1", port)

    async def echo() -> None:
        waiter[:] = [loop.create_future()]
        transport.write(b"0123456789abcdef")
        await waiter[0]

    rtt: list[float] = []
    echoes: list[float] = []
    clock = time.perf_counter
    try:
        for _ in range(200):  # warm up both
            await ping()
            await echo()
        for _ in range(10):
            for call, out in ((ping, rtt), (echo, echoes)):
                for _ in range(n // 10):
                    t = clock()
                    await call()
                    out.append(clock() - t)
    finally:
        transport.close()
        proc.stdin.close()
        await proc.wait()
    return sorted(rtt), sorted(echoes)

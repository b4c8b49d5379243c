"""asv benchmarks of the SQLite store's two commit paths (apply, log-first)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from typing import Any

from dna._core import pack
from dna.bench import BenchConfig, run_bench
from dna.store import ActorId
from dna.store.sqlite import SQLiteStore


class SeedBenchPaths:
    """The seed bench at n=200,000 on a real SQLite file, per commit path."""

    params = ["apply", "log"]
    param_names = ["commit"]
    timeout = 180.0

    def setup(self, commit: str) -> None:
        self.dir = tempfile.mkdtemp()

    def teardown(self, commit: str) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, commit: str) -> dict[str, Any]:
        path = os.path.join(self.dir, f"seed-{time.monotonic_ns()}.db")
        store = "sqlite?commit=log" if commit == "log" else "sqlite"
        return asyncio.run(run_bench(BenchConfig(n=200_000, store=store, path=path)))

    def track_seed_puts_per_s(self, commit: str) -> float:
        return float(self._run(commit)["puts_per_s"])

    track_seed_puts_per_s.unit = "puts/s"  # type: ignore[attr-defined]


async def _backlog(path: str, n: int) -> SQLiteStore:
    """An open log-first store holding n unapplied rows of one actor."""
    store = SQLiteStore(path, commit="log", log_max_rows=2 * (n + 5000), apply_idle_ms=None)
    await store.open("asv")
    claim = await store.claim(ActorId("asv", "log", "a"))
    value = pack(b"test")
    for start in range(0, n, 5000):
        await store.commit(claim, [("kv", str(i), value) for i in range(start, start + 5000)])
    return store


class LogApplier:
    """The applier's own ceiling and a claim's replay of a backlog (rows/s)."""

    n = 200_000
    timeout = 180.0

    def setup(self) -> None:
        self.dir = tempfile.mkdtemp()

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def track_applier_rows_per_s(self) -> float:
        async def go() -> float:
            store = await _backlog(os.path.join(self.dir, "a.db"), self.n)
            try:
                t0 = time.perf_counter()
                applied = await store.apply_log()
                return applied / (time.perf_counter() - t0)
            finally:
                await store.close()

        return asyncio.run(go())

    track_applier_rows_per_s.unit = "rows/s"  # type: ignore[attr-defined]

    def track_claim_replay_rows_per_s(self) -> float:
        async def go() -> float:
            path = os.path.join(self.dir, "r.db")
            await (await _backlog(path, self.n)).close()  # closing applies nothing
            heir = SQLiteStore(path, commit="log", apply_idle_ms=None)
            await heir.open("heir")
            try:
                t0 = time.perf_counter()
                await heir.claim(ActorId("asv", "log", "a"))
                return self.n / (time.perf_counter() - t0)
            finally:
                await heir.close()

        return asyncio.run(go())

    track_claim_replay_rows_per_s.unit = "rows/s"  # type: ignore[attr-defined]

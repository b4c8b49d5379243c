"""asv benchmarks of the actor runtime (in-process, no network)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from typing import Any

import dna
from dna.bench import BenchConfig, run_bench
from dna.examples import Noop
from dna.store.memory import MemoryStore


class CastThroughput:
    """10k casts to a no-op handler, no storage."""

    n = 10_000

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.node = dna.Node(store=MemoryStore())
        self.loop.run_until_complete(self.node.start())
        self.ref = self.node.ref(Noop, "asv")
        self.loop.run_until_complete(self.ref.ping())

    def teardown(self) -> None:
        self.loop.run_until_complete(self.node.stop())
        self.loop.close()

    def time_casts(self) -> None:
        async def go() -> None:
            tick = self.ref.tick
            for _ in range(self.n):
                await tick()
            await self.ref.ping()

        self.loop.run_until_complete(go())

    def time_call_round_trip(self) -> None:
        async def go() -> None:
            ping = self.ref.ping
            for _ in range(1000):
                await ping()

        self.loop.run_until_complete(go())


class SeedBench:
    """The seed bench at n=50,000 on a real SQLite file."""

    timeout = 120.0

    def setup(self) -> None:
        self.dir = tempfile.mkdtemp()

    def teardown(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self) -> dict[str, Any]:
        path = os.path.join(self.dir, "seed.db")
        return asyncio.run(run_bench(BenchConfig(n=50_000, path=path)))

    def time_seed_bench_50k(self) -> None:
        self._run()

    def track_seed_puts_per_s(self) -> float:
        return float(self._run()["puts_per_s"])

    track_seed_puts_per_s.unit = "puts/s"  # type: ignore[attr-defined]

    def peakmem_seed_bench_50k(self) -> None:
        self._run()


class RemoteRuntime:
    """Two nodes on one loop over loopback TCP (the actor on one, the sender on the
    other): casts and calls to a remote actor, and the same in process, for the
    remote/in-process ratios (the cross-process figures are ``dna bench --remote``
    and ``bench/remote_cost.py``)."""

    timeout = 120.0
    n = 20_000

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.host = dna.Node(store=MemoryStore(name="asv-remote"), listen="127.0.0.1:0",
                             secret=b"asv")
        self.client = dna.Node(store=MemoryStore(name="asv-remote"), listen="127.0.0.1:0",
                               secret=b"asv", host_actors=False)
        self.loop.run_until_complete(self.host.start())
        self.loop.run_until_complete(self.client.start())
        self.remote = self.client.ref(Noop, "asv-remote")
        self.local = self.host.ref(Noop, "asv-local")
        self.loop.run_until_complete(self.remote.ping())
        self.loop.run_until_complete(self.local.ping())

    def teardown(self) -> None:
        self.loop.run_until_complete(self.client.stop())
        self.loop.run_until_complete(self.host.stop())
        self.loop.close()

    def _casts(self, ref: Any) -> None:
        async def go() -> None:
            tick = ref.tick
            for _ in range(self.n):
                await tick()
            await ref.ping()

        self.loop.run_until_complete(go())

    def _calls(self, ref: Any) -> None:
        async def go() -> None:
            ping = ref.ping
            for _ in range(1000):
                await ping()

        self.loop.run_until_complete(go())

    def time_remote_casts(self) -> None:
        self._casts(self.remote)

    def time_inprocess_casts(self) -> None:
        self._casts(self.local)

    def time_remote_call_round_trips(self) -> None:
        self._calls(self.remote)

    def time_inprocess_call_round_trips(self) -> None:
        self._calls(self.local)

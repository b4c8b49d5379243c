"""The pipeline example (examples/pipeline) on three ``dna node`` processes sharing one
store (a SQLite file; Cassandra), driven by a client node in this process, while
random nodes are killed with SIGKILL (and replaced): the final counts are exact.

What it shows: a feed retried after a lost answer is taken once (the source's
batch numbers), and every ``self.send`` between the stages is applied exactly
once whatever node dies between a commit and its delivery or acknowledgement.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import CQL_HOSTS, CQL_KEYSPACE, NO_CQL_REASON

import dna
from dna.store import open_store

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `examples` imports from the repository root

from examples.iot.harness import Proc  # noqa: E402
from examples.pipeline.actors import PARTITIONS, Counter, Source, Totals  # noqa: E402
from examples.pipeline.text import expected, lines  # noqa: E402

SECRET = "a pipeline test secret, long enough"
LINES = 800
PER_FEED = 20
KILLS = 3


def store_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite://{tmp_path / 'pipeline.db'}"
    if kind == "sqlite-log":  # the log-first commit path
        return f"sqlite://{tmp_path / 'pipeline.db'}?commit=log"
    if not CQL_HOSTS:
        pytest.skip(NO_CQL_REASON)
    host = CQL_HOSTS.split(",")[0]
    return f"cql://{host}/{CQL_KEYSPACE}?lease=3&heartbeat_interval=0.3"


class Cluster:
    """``dna node`` processes running the example's actors, killed and replaced at will."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.tmp = tmp_path
        self.secret = tmp_path / "secret"
        self.secret.write_text(SECRET)
        self.secret.chmod(0o600)
        self.nodes: list[Proc] = []
        self.started = 0

    async def start(self) -> Proc:
        self.started += 1
        proc = Proc([sys.executable, "-m", "dna", "node", "--store", self.url,
                     "--listen", "127.0.0.1:0", "--secret-file", str(self.secret),
                     "--app", "examples.pipeline.actors"],
                    self.tmp / f"node{self.started}.log")
        self.nodes.append(proc)
        await asyncio.to_thread(proc.wait_for, r"listening on", 60.0)
        return proc

    async def kill_one(self, rng: random.Random) -> None:
        victim = rng.choice(self.nodes)
        os.kill(victim.p.pid, signal.SIGKILL)
        await asyncio.to_thread(victim.p.wait)
        victim.out.close()
        self.nodes.remove(victim)
        await self.start()

    def close(self) -> None:
        for proc in self.nodes:
            proc.p.kill()
            proc.p.wait()
            proc.out.close()


async def retry(what: Callable[[], Awaitable[Any]], seconds: float = 60.0) -> Any:
    """``what()`` until it answers: a node may die under any request."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await what()
        except dna.errors.DNAError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)  # backoff before asking again (a kill is being recovered)


@pytest.mark.parametrize(
    "kind", ["sqlite", "sqlite-log", pytest.param("cql", marks=pytest.mark.cql)]
)
async def test_counts_are_exact_while_nodes_are_killed(
    kind: str, tmp_path: Path, unique: str
) -> None:
    url = store_url(kind, tmp_path)
    ns = f"pl-{unique}"
    text = lines(LINES, seed=len(unique))
    rng = random.Random(unique)
    feeds = LINES // PER_FEED
    kill_after = set(rng.sample(range(2, feeds - 2), KILLS))
    cluster = Cluster(url, tmp_path)
    client = dna.Node(store=open_store(url), listen="127.0.0.1:0", secret=SECRET,
                      host_actors=False, call_timeout=5.0)
    try:
        for _ in range(3):
            await cluster.start()
        await client.start()
        source = client.ref(Source, "input", ns)
        for batch in range(feeds):
            chunk = text[batch * PER_FEED:(batch + 1) * PER_FEED]
            await retry(lambda b=batch, c=chunk: source.feed.with_timeout(3.0)(b, c))
            if batch in kill_after:  # sends of this feed are on their way downstream
                await cluster.kill_one(rng)
        while await retry(lambda: source.pump.with_timeout(3.0)()):
            pass
        assert await retry(lambda: source.flushed.with_timeout(5.0)()) == 0
        partitions = {}
        for p in range(PARTITIONS):
            counter = client.ref(Counter, f"p{p}", ns)
            partitions[p] = await retry(lambda c=counter: c.flushed.with_timeout(5.0)())
        totals = await retry(lambda: client.ref(Totals, "all", ns).totals.with_timeout(3.0)())
    finally:
        await client.stop()
        cluster.close()
    want = expected(text)
    assert cluster.started == 3 + KILLS
    assert sum(sum(c.values()) for c in partitions.values()) == sum(want.values())
    assert totals == want

"""A link between real ``dna node`` processes goes silent (blackholed by a relay:
bytes held, no FIN, no RST): the caller notices within the liveness bound, gets a
retryable error, loses nothing acknowledged, and is served again once the link
carries bytes again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.relay import Relay
from tests.test_cluster import ROOT, free_port

import dna
from dna.examples import KVActor

SECRET = b"links-secret-0123456789abcdef"
DEAD_AFTER = 2.5  # the transport's default: a silent link with calls in flight is dead
CHECK = 0.25  # ping_interval / 4: how often liveness is checked


@pytest.fixture
def relayed(tmp_path: Path) -> Iterator[tuple[Relay, Path, Any]]:
    """A ``dna node`` hosting actors, reachable only through a relay (it advertises
    the relay's address; the test starts the relay), on a fresh SQLite file."""
    db = tmp_path / "links.db"
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET)
    secret_file.chmod(0o600)
    port = free_port()
    relay = Relay("127.0.0.1", port)
    relay.port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dna", "node", "--store", f"sqlite://{db}", "--listen",
         f"127.0.0.1:{port}", "--advertise", f"127.0.0.1:{relay.port}", "--secret-file",
         str(secret_file), "--app", "dna.examples", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        assert "listening on" in proc.stdout.readline()
        yield relay, db, proc
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


async def until_served(ref: Any, key: str, value: Any, within: float) -> None:
    """Retries a put (retryable errors only) until it is acknowledged."""
    deadline = time.monotonic() + within
    while True:
        try:
            assert await ref.put.with_timeout(5.0)(key, value) == "ok"
            return
        except dna.errors.DNAError as exc:
            assert isinstance(exc, dna.errors.Retryable), repr(exc)
            assert time.monotonic() < deadline, f"not served again within {within} s: {exc!r}"


@pytest.mark.parametrize("direction", ["forward", "backward"])
async def test_a_blackholed_link_fails_calls_fast_and_recovers(
    relayed: tuple[Relay, Path, Any], direction: str
) -> None:
    relay, db, proc = relayed
    await relay.start(relay.port)
    try:
        await blackholed_and_healed(relay, db, proc, direction)
    finally:
        await relay.close()


async def blackholed_and_healed(relay: Relay, db: Path, proc: Any, direction: str) -> None:
    client = dna.Node(store=dna.SQLiteStore(str(db)), listen="127.0.0.1:0", secret=SECRET,
                      host_actors=False)
    async with client:
        await client.cluster.refresh_peers()
        ref = client.ref(KVActor, "k")
        for i in range(20):
            assert await ref.put(f"k{i}", i) == "ok"  # acknowledged through the relay
        assert relay.connections >= 1
        relay.blackhole(direction)  # requests (forward) or replies (backward) held
        t0 = time.monotonic()
        with pytest.raises(dna.errors.DNAError) as err:
            await ref.put.with_timeout(30.0)("during", 1)
        took = time.monotonic() - t0
        assert isinstance(err.value, dna.errors.PeerUnavailable), repr(err.value)
        assert isinstance(err.value, dna.errors.Retryable)
        assert took <= DEAD_AFTER + 4 * CHECK, f"the dead link took {took:.2f} s to notice"
        assert took >= DEAD_AFTER - CHECK  # it was the liveness check, not a reset
        assert relay.held[direction] > 0  # the bytes really were held, not refused
        relay.resume()
        await until_served(ref, "after", 2, within=15.0)
        for i in range(20):
            assert await ref.get(f"k{i}") == i  # nothing acknowledged is lost
        assert await ref.get("after") == 2
        assert proc.poll() is None

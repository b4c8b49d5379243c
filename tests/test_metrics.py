"""``dna node --metrics``: a real node process under traffic from a peer, scraped over
HTTP and parsed with prometheus_client's own parser; health and readiness while it drains."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import dna
from dna.cli import EXIT_ADDRESS
from dna.store.sqlite import SQLiteStore
from test_cli import SECRET, node_process, one_line_error, secret_file

TESTS = Path(__file__).resolve().parent


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` as ``{(name, sorted labels): value}``."""
    status, text = get(base + "/metrics")
    assert status == 200, text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def served_at(p: Any) -> str:
    line = p.stdout.readline()
    assert "serving" in line, line
    return line.rsplit(" on ", 1)[1].strip()


async def test_metrics_of_a_live_node(tmp_path: Path) -> None:
    from ops_app import OpsProbe

    db = tmp_path / "app.db"
    args = ["--store", f"sqlite://{db}", "--listen", "127.0.0.1:0", "--app", "ops_app",
            "--secret-file", secret_file(tmp_path), "--metrics", "127.0.0.1:0"]
    with node_process(*args, cwd=TESTS) as (p, _line):
        base = served_at(p)
        client = dna.Node(store=SQLiteStore(db), listen="127.0.0.1:0", secret=SECRET,
                          host_actors=False)
        async with client:
            ref = client.ref(OpsProbe, "m1")
            for i in range(50):
                assert await ref.put(str(i), i) == "ok"
            for _ in range(100):
                await ref.tick()
            for _ in range(3):
                with pytest.raises(dna.ActorError):
                    await ref.boom("no")
            assert await ref.put("last", 1) == "ok"  # after the casts, in order
            m = await asyncio.to_thread(scrape, base)
        t = (("actor_type", "ops_app.OpsProbe"),)
        assert m[("dna_messages_total", t)] == 154
        assert m[("dna_handler_errors_total", t)] == 3
        assert m[("dna_activations", t)] == 1
        assert m[("dna_mailbox_depth", t)] == 0
        assert m[("dna_claims_total", ())] == 1
        assert m[("dna_commit_seconds_count", ())] >= 1
        assert m[("dna_commit_rows_total", ())] == 51
        batches = m[("dna_batch_size_count", ())]
        assert 1 <= batches <= 154 and m[("dna_batch_size_sum", ())] == 154
        assert m[("dna_batch_size_bucket", (("le", "+Inf"),))] == batches
        assert m[("dna_node_up", ())] == 1 and m[("dna_node_draining", ())] == 0
        assert m[("dna_peer_connections", (("state", "authenticated"),))] >= 1
        assert m[("dna_peer_connection_bytes", (("direction", "in"),))] > 154 * 10
        assert m[("process_resident_memory_bytes", ())] > 0
        assert (await asyncio.to_thread(get, base + "/healthz"))[0] == 200
        assert (await asyncio.to_thread(get, base + "/nope"))[0] == 404


async def test_ready_until_draining_alive_until_stopped(tmp_path: Path) -> None:
    from ops_app import SlowToLeave

    db = tmp_path / "app.db"
    args = ["--store", f"sqlite://{db}", "--listen", "127.0.0.1:0", "--app", "ops_app",
            "--secret-file", secret_file(tmp_path), "--health", "127.0.0.1:0"]
    with node_process(*args, cwd=TESTS) as (p, _line):
        base = served_at(p)
        assert await asyncio.to_thread(get, base + "/readyz") == (200, "ok\n")
        client = dna.Node(store=SQLiteStore(db), listen="127.0.0.1:0", secret=SECRET,
                          host_actors=False)
        async with client:
            assert await client.ref(SlowToLeave, "s").hold(3.0) == "held"
        assert (await asyncio.to_thread(get, base + "/metrics"))[0] == 404  # health only
        p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while (await asyncio.to_thread(get, base + "/readyz"))[0] == 200:
            assert time.monotonic() < deadline, "never unready after SIGTERM"
            await asyncio.sleep(0.05)
        assert await asyncio.to_thread(get, base + "/readyz") == (503, "draining\n")
        assert (await asyncio.to_thread(get, base + "/healthz"))[0] == 200  # still alive
        out, err = await asyncio.to_thread(p.communicate, timeout=30)
        assert p.returncode == 0 and "stopped" in out, err


def test_metrics_port_in_use(tmp_path: Path) -> None:
    import socket

    from test_cli import dna_cli

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = dna_cli("node", "--store", "memory://", "--listen", "127.0.0.1:0",
                    "--metrics", f"127.0.0.1:{port}", cwd=tmp_path)
    one_line_error(r, EXIT_ADDRESS, f"127.0.0.1:{port}", "--metrics", "in use")


def test_commit_latencies_are_bounded_on_a_long_running_node() -> None:
    """A node that commits for months keeps a bounded sample and an exact histogram."""
    from dna.stats import COMMIT_BUCKETS, RECENT_COMMITS, Stats

    stats = Stats()
    n = RECENT_COMMITS + 5_000
    for i in range(n):
        stats.commit(1, 0.002 if i < n - 10 else 3.0)
    assert len(stats.commit_times) == RECENT_COMMITS
    assert sum(stats.commit_counts) == n  # every commit counts in the histogram
    assert stats.commit_counts[COMMIT_BUCKETS.index(0.0025)] == n - 10
    assert stats.commit_counts[COMMIT_BUCKETS.index(5.0)] == 10
    assert stats.percentile(99.995) == 3.0 and stats.percentile(50) == 0.002

"""OpenTelemetry traces: a call from this process (a traced client node, spans in the
SDK's in-memory exporter) to an actor on a real `dna node --trace-file` process is one
trace across the two processes; with tracing off no traceparent travels."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import dna
from dna import _trace
from dna.examples import KVActor
from dna.senders import CallSender
from dna.store import open_store


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    untraced = CallSender.__dict__["_call"]
    dna.enable_tracing(provider)
    try:
        yield exp
    finally:
        dna.disable_tracing()
        assert CallSender.__dict__["_call"] is untraced and not _trace.ON


def spans_in(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def server_spans(path: Path, n: int, within: float = 20.0,
                       until: Any = None) -> list[dict[str, Any]]:
    """The SERVER spans the node process wrote, once there are ``n`` (and ``until`` holds
    of them): another process, so polled with a deadline."""
    deadline = time.monotonic() + within
    while True:
        got = [s for s in spans_in(path) if s["kind"] == "SpanKind.SERVER"]
        done = len(got) >= n and (until is None or until(got))
        if done or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


@pytest.fixture
def traced_node(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A `dna node --trace-file` process on a fresh SQLite file."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(secrets.token_hex(16))
    os.chmod(secret_file, 0o600)
    store = f"sqlite://{tmp_path}/trace.db"
    trace_file = tmp_path / "spans.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dna", "node", "--store", store, "--listen", "127.0.0.1:0",
         "--secret-file", str(secret_file), "--trace-file", str(trace_file),
         "--rebalance-rate", "0", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        assert "listening on" in line, line
        yield {"store": store, "secret": secret_file.read_bytes(), "spans": trace_file,
               "node_id": line.split()[2]}
    finally:
        proc.terminate()
        proc.wait()
        proc.stdout.close()


async def test_a_call_is_one_trace_across_two_processes(
    traced_node: dict[str, Any], exporter: InMemorySpanExporter
) -> None:
    trace_file = traced_node["spans"]
    client = dna.Node(store=open_store(traced_node["store"]), listen="127.0.0.1:0",
                      secret=traced_node["secret"], host_actors=False)
    async with client:
        await client.cluster.refresh_peers()
        ref = client.ref(KVActor, "traced")
        assert await ref.put("a", 1) == "ok"
        [server] = await server_spans(trace_file, 1)
        [mine] = exporter.get_finished_spans()
        assert mine.name == "call dna.examples.KVActor.put"
        assert mine.attributes is not None and mine.attributes["dna.node"] == client.node_id
        assert server["name"] == "handle dna.examples.KVActor.put"
        assert server["attributes"]["dna.node"] == traced_node["node_id"] != client.node_id
        assert server["context"]["trace_id"] == f"0x{mine.context.trace_id:032x}"
        assert server["parent_id"] == f"0x{mine.context.span_id:016x}"

        dna.disable_tracing()  # off: the frame carries no traceparent, no span there
        assert await ref.put("b", 2) == "ok"
        dna.enable_tracing(exporter_provider(exporter))
        assert await ref.put("c", 3) == "ok"
        third = f"0x{exporter.get_finished_spans()[-1].context.trace_id:032x}"
        got = await server_spans(trace_file, 0, until=lambda spans: any(
            s["context"]["trace_id"] == third for s in spans))
        # the untraced call in between left no span: the file holds the first and third
        assert [s["context"]["trace_id"] for s in got] == [server["context"]["trace_id"], third]


def exporter_provider(exp: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    return provider


def test_a_traceparent_is_checked_like_the_rest_of_a_frame() -> None:
    from dna.cluster import decode_remote
    from dna.errors import ProtocolError

    wire = ["dna.examples.KVActor", "default", "k", [["get", ["a"], None]], 1, []]
    decode_remote([*wire, "00-" + "1" * 32 + "-" + "2" * 16 + "-01"])
    for bad in (7, "x" * 300):
        with pytest.raises(ProtocolError):
            decode_remote([*wire, bad])
    with pytest.raises(ProtocolError):
        decode_remote([*wire, "tp", "extra"])

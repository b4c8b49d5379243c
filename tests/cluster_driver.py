"""A real cluster node in its own process, driven by JSON lines on stdin.

    python tests/cluster_driver.py STORE_ARGS_JSON LISTEN SECRET

Commands (one JSON object a line; one JSON reply a line):
    {"op": "call", "key": k, "h": handler, "args": [...], "timeout": s}
    {"op": "kcall", ...same...}  the same through a ref and sender kept across calls
    {"op": "stream", "key": k, "n": n, "start": i, "seconds": s}  gated puts i..i+n-1,
        retrying each failed put until it is acknowledged or time runs out; first a
        {"started": m} line once m (the "started" field, default 20) puts are in
    {"op": "mput", "key": k, "value": v} / {"op": "mgets", "key": k, "n": n}
    {"op": "mput_until", "key": k, "value": v, "seconds": s}
        put, or n back-to-back gets, on a MemKV actor (state answered from memory)
    {"op": "info"}   node id, address, activations
    {"op": "drain"} / {"op": "stop"}
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import dna
import dna.storage
from dna.examples import KVActor


class MemKV(dna.Actor):
    """Answers reads from memory loaded in on_activate, as the README's pattern does:
    only a live, valid activation may answer."""

    type_name = "tests.MemKV"
    kv = dna.storage.KV()

    async def on_activate(self) -> None:
        self.value = await self.kv.read("v")

    @dna.call
    def put(self, value: Any) -> str:
        self.kv.write("v", value)
        self.value = value
        return "ok"

    @dna.call
    def get(self) -> Any:
        return self.value


def make_store(spec: dict[str, Any]) -> Any:
    if spec["kind"] == "sqlite":
        return dna.SQLiteStore(spec["path"], commit=spec.get("commit", "apply"))
    return dna.ScyllaStore(hosts=spec["hosts"], keyspace=spec["keyspace"],
                           lease=spec.get("lease", 10.0),
                           heartbeat_interval=spec.get("heartbeat", 1.0),
                           activation=spec.get("activation", "actor"))


async def stream(node: dna.Node, cmd: dict[str, Any], say: Any) -> dict[str, Any]:
    ref = node.ref(KVActor, cmd["key"])
    started = min(cmd.get("started", 20), cmd["n"])  # a test waits for this, not a sleep
    acked: list[int] = []
    errors: dict[str, int] = {}
    deadline = time.monotonic() + cmd.get("seconds", 30)
    for i in range(cmd["start"], cmd["start"] + cmd["n"]):
        while time.monotonic() < deadline:
            try:
                await ref.put.with_timeout(2.0)(str(i), i)
            except dna.errors.DNAError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                await asyncio.sleep(0.05)
                continue
            acked.append(i)
            break
        if len(acked) == started:
            say({"started": started})
    if len(acked) < started:
        say({"started": len(acked)})  # the reader still gets its line
    return {"acked": acked, "errors": errors}


async def main() -> None:
    spec = json.loads(sys.argv[1])
    node = dna.Node(store=make_store(spec), listen=sys.argv[2], secret=sys.argv[3].encode(),
                    call_timeout=5.0)
    await node.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(obj: Any) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    say({"ready": node.node_id, "address": node.address})
    kept: dict[tuple[str, str, float], Any] = {}  # senders of kept refs, as a client keeps them
    while line := await reader.readline():
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "call":
            ref = node.ref(KVActor, cmd["key"])
            try:
                fn = getattr(ref, cmd["h"]).with_timeout(cmd.get("timeout", 5.0))
                say({"ok": await fn(*cmd.get("args", []))})
            except Exception as exc:
                say({"error": type(exc).__name__, "message": str(exc)})
        elif op == "kcall":
            spot = (cmd["key"], cmd["h"], cmd.get("timeout", 5.0))
            if spot not in kept:
                ref = node.ref(KVActor, cmd["key"])
                kept[spot] = getattr(ref, cmd["h"]).with_timeout(spot[2])
            try:
                say({"ok": await kept[spot](*cmd.get("args", []))})
            except Exception as exc:
                say({"error": type(exc).__name__, "message": str(exc),
                     "retryable": isinstance(exc, dna.errors.Retryable)})
        elif op == "mput":
            try:
                say({"ok": await node.ref(MemKV, cmd["key"]).put.with_timeout(3.0)(cmd["value"])})
            except Exception as exc:
                say({"error": type(exc).__name__, "message": str(exc)})
        elif op == "mput_until":  # retry until acknowledged or `seconds` pass
            ref = node.ref(MemKV, cmd["key"])
            end = time.monotonic() + cmd["seconds"]
            got: dict[str, Any] = {"error": "none tried"}
            while time.monotonic() < end:
                try:
                    got = {"ok": await ref.put.with_timeout(1.0)(cmd["value"])}
                    break
                except dna.errors.DNAError as exc:
                    got = {"error": type(exc).__name__, "message": str(exc)}
                    await asyncio.sleep(0.05)
            say(got)
        elif op == "mgets":
            get = node.ref(MemKV, cmd["key"]).get.with_timeout(3.0)
            answers: list[Any] = []
            for _ in range(cmd["n"]):
                try:
                    answers.append({"ok": await get()})
                except Exception as exc:
                    answers.append({"error": type(exc).__name__,
                                    "retryable": isinstance(exc, dna.errors.Retryable)})
            say({"answers": answers})
        elif op == "stream":
            say(await stream(node, cmd, say))
        elif op == "info":
            say({"node_id": node.node_id, "address": node.address,
                 "activations": node.activations})
        elif op == "drain":
            await node.drain()
            say({"drained": True})
            return
        elif op == "stop":
            break
    await node.stop()


if __name__ == "__main__":
    asyncio.run(main())

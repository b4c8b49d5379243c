"""A node process with durable timers, driven by JSON lines on stdin.

    python tests/timer_driver.py STORE_ARGS_JSON LISTEN SECRET

Commands (one JSON object a line; one JSON reply a line):
    {"op": "arm", "key": k, "n": n, "at": epoch_s}   timers t000..t{n-1} on Alarm k, due at
    {"op": "effects", "key": k}   what on_timer committed: [[name, node, fired_at], ...]
    {"op": "pending", "key": k}   names of the timers still pending
    {"op": "info"}   node id, timers fired by this node's scanner, activations
    {"op": "drain"} / {"op": "stop"}
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import dna
from dna.storage import KV, Timers


class Alarm(dna.Actor):
    type_name = "tests.procs.Alarm"
    kv = KV()
    timers = Timers()

    @dna.call
    def arm(self, n: int, at: float) -> int:
        for i in range(n):
            self.timers.set(f"t{i:03d}", at=at, payload=i)
        return n

    @dna.call
    async def effects(self) -> list[Any]:
        return [v for _, v in await self.kv.list("fired/", limit=100_000)]

    @dna.call
    async def pending(self) -> list[str]:
        return [t.name for t in await self.timers.list(limit=100_000)]

    async def on_timer(self, name: str, payload: Any) -> None:
        # one row per firing that committed: a duplicate effect would show as two rows
        n = len(await self.kv.list("fired/", limit=100_000))
        self.kv.write(f"fired/{n:06d}", [name, self.node.node_id, time.time()])


def make_store(spec: dict[str, Any]) -> Any:
    if spec["kind"] == "sqlite":
        return dna.SQLiteStore(spec["path"], commit=spec.get("commit", "apply"))
    return dna.ScyllaStore(hosts=spec["hosts"], keyspace=spec["keyspace"],
                           lease=spec.get("lease", 10.0),
                           heartbeat_interval=spec.get("heartbeat", 1.0))


async def serve(node: dna.Node, cmd: dict[str, Any]) -> Any:
    op = cmd["op"]
    if op == "info":
        return {"node_id": node.node_id, "fired": node.timers.fired,
                "activations": node.activations}
    ref = node.ref(Alarm, cmd["key"])
    if op == "arm":
        return await ref.arm(cmd["n"], cmd["at"])
    if op == "effects":
        return await ref.effects()
    if op == "pending":
        return await ref.pending()
    raise ValueError(op)


async def main() -> None:
    spec = json.loads(sys.argv[1])
    node = dna.Node(store=make_store(spec), listen=sys.argv[2], secret=sys.argv[3].encode(),
                    call_timeout=5.0, timer_poll=0.05)
    node.timers.backoff_base = 0.1
    node.timers.backoff_max = 1.0
    await node.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(obj: Any) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    say({"ready": node.node_id, "address": node.address})
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["op"] == "drain":
            await node.drain()
            say({"drained": True})
            return
        if cmd["op"] == "stop":
            break
        try:
            say({"ok": await serve(node, cmd)})
        except Exception as exc:
            say({"error": type(exc).__name__, "message": str(exc)})
    await node.stop()


if __name__ == "__main__":
    asyncio.run(main())

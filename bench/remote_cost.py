"""Instructions per remote cast and per remote call on each end, with callgrind.

    PYTHONPATH=src python bench/remote_cost.py [--casts 20000] [--calls 2000]

Runs the seed bench's remote shape four times, the sender (this process) and the
actor's ``dna node`` process both under ``valgrind --tool=callgrind``: N and 2N
casts into one KVActor, then M and 2M sequential calls of ``Noop.ping``. The
difference between the two runs of a pair, divided by N (or M), is the cost of one
cast (one call) on each end, startup and warm-up cancelled out. Instruction counts
do not move with the load of a shared machine, unlike times. Asserts nothing.
``--once`` runs one client without valgrind (what each run executes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

VALGRIND = ["valgrind", "--tool=callgrind", "--quiet"]


async def client(casts: int, calls: int, node_prefix: list[str]) -> None:
    """One run: a ``dna node`` (behind ``node_prefix``), ``casts`` puts then ``calls`` pings."""
    from dna import Node, SQLiteStore
    from dna.examples import KVActor, Noop

    work = Path(tempfile.mkdtemp(prefix="dna-cost-"))
    secret = work / "secret"
    secret.touch(mode=0o600)
    secret.write_bytes(secrets.token_hex(16).encode())
    db = work / "bench.db"
    proc = await asyncio.create_subprocess_exec(
        *node_prefix, sys.executable, "-m", "dna", "node", "--listen", "127.0.0.1:0",
        "--secret-file", str(secret), "--store", f"sqlite://{db}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = (await proc.stdout.readline()).decode()
        if "listening on" not in line:
            raise SystemExit(f"the node did not start: {line!r}")
        node = Node(store=SQLiteStore(str(db)), listen="127.0.0.1:0",
                    secret=secret.read_bytes(), host_actors=False)
        async with node:
            ref = node.ref(KVActor, "cost")
            ping = node.ref(Noop, "cost").ping
            await ref.get("warm-up")
            for _ in range(100):
                await ping()
                await ref.put_cast("w", b"test")
            await ref.put("w", b"test")
            put = ref.put_cast
            for i in range(casts):
                await put(str(i), b"test")
            await ref.put(str(casts), b"test")  # every cast handled and durable
            for _ in range(calls):
                await ping()
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def total(path: Path) -> int:
    """Instructions (Ir) in a callgrind output file, every thread of it."""
    n = 0
    for f in path.parent.glob(path.name + "*"):
        m = re.search(r"^(?:summary|totals): (\d+)", f.read_text(errors="replace"), re.M)
        if m:
            n += int(m.group(1))
    return n


def measured(casts: int, calls: int, out: Path, tag: str) -> tuple[int, int]:
    """(sender's, node's) instructions of one run, both under callgrind."""
    node_out = out / f"node-{tag}.out"
    client_out = out / f"client-{tag}.out"
    prefix = [*VALGRIND, f"--callgrind-out-file={node_out}"]
    subprocess.run(
        [*VALGRIND, f"--callgrind-out-file={client_out}", sys.executable, __file__,
         "--once", "--casts", str(casts), "--calls", str(calls),
         "--node-prefix", json.dumps(prefix)],
        check=True, env=os.environ,
    )
    return total(client_out), total(node_out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--casts", type=int, default=20_000)
    ap.add_argument("--calls", type=int, default=2_000)
    ap.add_argument("--out", type=Path, default=None, help="keep callgrind files here")
    ap.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--node-prefix", default="[]", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.once:
        asyncio.run(client(ns.casts, ns.calls, json.loads(ns.node_prefix)))
        return
    out = ns.out or Path(tempfile.mkdtemp(prefix="dna-callgrind-"))
    out.mkdir(parents=True, exist_ok=True)
    n, m = ns.casts, ns.calls
    c1, s1 = measured(n, 0, out, "casts1")
    c2, s2 = measured(2 * n, 0, out, "casts2")
    k1, t1 = measured(0, m, out, "calls1")
    k2, t2 = measured(0, 2 * m, out, "calls2")
    print(json.dumps({
        "casts": n, "calls": m, "callgrind_files": str(out),
        "sender_instr_per_cast": (c2 - c1) / n, "node_instr_per_cast": (s2 - s1) / n,
        "caller_instr_per_call": (k2 - k1) / m, "node_instr_per_call": (t2 - t1) / m,
    }))


if __name__ == "__main__":
    main()

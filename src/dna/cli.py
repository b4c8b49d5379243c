"""The ``dna`` command (also ``python -m dna``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", type=int, default=1_000_000, help="cast puts (default 1,000,000)")
    p.add_argument("--actors", type=int, default=1, help="spread the puts over K actors")
    p.add_argument("--store", choices=["sqlite", "cql", "memory"], default="sqlite")
    p.add_argument("--path", help="SQLite file (default: a temporary file)")
    p.add_argument("--hosts", default="", help="CQL contact points HOST:PORT[,HOST:PORT]")
    p.add_argument("--keyspace", default="dna_bench")
    p.add_argument("--ceiling", action="store_true", help="first measure raw store ingest")
    p.add_argument("--max-batch", type=int, default=5_000)
    p.add_argument("--remote", action="store_true",
                   help="actor in a `dna node` process, sender here, over loopback TCP")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _print_bench(r: dict[str, Any]) -> None:
    print(f"Single actor put, total: {r['n']} in {r['seconds']:.3f} seconds"
          if r["actors"] == 1 else
          f"{r['actors']} actors put, total: {r['n']} in {r['seconds']:.3f} seconds")
    print(f"Put per second: {r['puts_per_s']:,.0f}")
    print(f"store: {r['store']}  batches: {r['batches']}  mean batch: {r['mean_batch']:.1f}  "
          f"max batch: {r['max_batch']}")
    print(f"commits: {r['commits']}  commit p50: {r['commit_p50_ms']:.2f} ms  "
          f"p99: {r['commit_p99_ms']:.2f} ms  peak RSS: {r['peak_rss_mib']:.0f} MiB")
    if "ceiling_rows_per_s" in r:
        print(f"raw store ingest: {r['ceiling_rows_per_s']:,.0f} rows/s  "
              f"ratio: {r['ratio']:.2f}")


def cmd_bench(ns: argparse.Namespace) -> int:
    from .bench import BenchConfig, run_bench

    if ns.n < 1 or ns.actors < 1:
        raise SystemExit("-n and --actors must be at least 1")
    cfg = BenchConfig(
        n=ns.n,
        actors=ns.actors,
        store=ns.store,
        path=ns.path,
        hosts=[h for h in ns.hosts.split(",") if h],
        keyspace=ns.keyspace,
        ceiling=ns.ceiling,
        progress=sys.stderr.isatty() and not ns.json,
        max_batch=ns.max_batch,
    )
    if ns.remote:
        from .bench import run_remote

        cfg.remote = True
        result = asyncio.run(run_remote(cfg))
        if ns.json:
            print(json.dumps(result))
        else:
            print(f"Remote put (actor in another process), total: {result['n']} in "
                  f"{result['seconds']:.3f} seconds")
            print(f"Put per second: {result['puts_per_s']:,.0f}  in-process: "
                  f"{result['inprocess_puts_per_s']:,.0f}  ratio: {result['ratio']:.2f}")
            print(f"remote call round trip: p50 {result['remote_call_p50_us']:.0f} us, "
                  f"p99 {result['remote_call_p99_us']:.0f} us")
        return 0
    result = asyncio.run(run_bench(cfg))
    if ns.json:
        print(json.dumps(result))
    else:
        _print_bench(result)
    return 0


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", choices=["sqlite", "cql"], default="sqlite")
    p.add_argument("--path", default="dna.db", help="SQLite file (default dna.db)")
    p.add_argument("--hosts", default="", help="CQL contact points HOST:PORT[,HOST:PORT]")
    p.add_argument("--keyspace", default="dna")


def _open_store(ns: argparse.Namespace) -> Any:
    if ns.store == "sqlite":
        from .store.sqlite import SQLiteStore

        return SQLiteStore(ns.path)
    from .store.scylla import ScyllaStore

    hosts = [h for h in ns.hosts.split(",") if h]
    if not hosts:
        raise SystemExit("--store cql needs --hosts HOST:PORT")
    return ScyllaStore(hosts=hosts, keyspace=ns.keyspace)


def _read_secret(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        secret = f.read().strip()
    if not secret:
        raise SystemExit(f"secret file {path} is empty")
    return secret


def cmd_node(ns: argparse.Namespace) -> int:
    import importlib
    import signal

    from .node import Node

    for mod in ns.app or ["dna.examples"]:
        importlib.import_module(mod)

    async def run() -> None:
        node = Node(
            store=_open_store(ns), listen=ns.listen, secret=_read_secret(ns.secret_file),
            insecure=ns.insecure, passivate_after=ns.passivate_after,
        )
        await node.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"dna node {node.node_id} listening on {node.address}", flush=True)
        await stop.wait()
        print(f"dna node {node.node_id} draining", flush=True)
        await node.drain()
        print(f"dna node {node.node_id} stopped", flush=True)

    asyncio.run(run())
    return 0


def cmd_status(ns: argparse.Namespace) -> int:
    async def run() -> list[Any]:
        from .node import new_node_id

        store = _open_store(ns)
        await store.open(f"status-{new_node_id()}", "")
        try:
            return [r for r in await store.nodes() if not r.node_id.startswith("status-")]
        finally:
            await store.close()

    rows = asyncio.run(run())
    if ns.json:
        print(json.dumps([{"node_id": r.node_id, "address": r.address, "alive": r.alive,
                           "draining": r.draining, "activations": r.load} for r in rows]))
        return 0
    print(f"{'node':<36} {'address':<22} {'alive':<6} {'draining':<9} activations")
    for r in rows:
        alive = "?" if r.alive is None else ("yes" if r.alive else "no")
        print(f"{r.node_id:<36} {r.address:<22} {alive:<6} {'yes' if r.draining else 'no':<9} "
              f"{r.load}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dna", description="Durable Named Actors")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="the seed benchmark: N cast puts, then one call")
    _bench_args(bench)
    bench.set_defaults(func=cmd_bench)
    node = sub.add_parser("node", help="run a node process (SIGTERM drains it)")
    _store_args(node)
    node.add_argument("--listen", default="127.0.0.1:7101", help="HOST:PORT for peers")
    node.add_argument("--secret-file", help="file holding the cluster secret")
    node.add_argument("--insecure", action="store_true",
                      help="allow a non-loopback listen address without a secret")
    node.add_argument("--app", action="append", help="module defining actor classes (repeatable)")
    node.add_argument("--passivate-after", type=float, default=300.0)
    node.set_defaults(func=cmd_node)
    status = sub.add_parser("status", help="list the cluster's nodes")
    _store_args(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    rc: int = ns.func(ns)
    return rc

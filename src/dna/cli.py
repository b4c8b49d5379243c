"""The ``dna`` command (also ``python -m dna``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

__all__ = ["main", "store_url"]

_URL_HELP = (
    "store URL: sqlite:///abs/path/app.db, sqlite://relative.db, "
    "cql://host:9042,host2/keyspace, memory://name"
)


def _store_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--store", default=default, metavar="URL", help=f"{_URL_HELP} (default {default})"
    )
    # the form before URLs, kept for scripts: --store sqlite --path F / --store cql --hosts H
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--hosts", help=argparse.SUPPRESS)
    p.add_argument("--keyspace", help=argparse.SUPPRESS)


def store_url(ns: argparse.Namespace, sqlite_path: str, keyspace: str) -> str:
    """The store URL of ``--store``; the older ``--store sqlite|cql|memory`` with
    ``--path``/``--hosts``/``--keyspace`` is translated (``sqlite_path`` and
    ``keyspace`` are its defaults)."""
    store: str = ns.store
    if "://" in store:
        if ns.path or ns.hosts or ns.keyspace:
            raise SystemExit(
                f"--path, --hosts and --keyspace do not go with a store URL: put them in "
                f"the URL ({_URL_HELP})"
            )
        return store
    if store == "sqlite":
        return "sqlite://" + quote(ns.path or sqlite_path, safe="/")
    if store == "cql":
        hosts = ",".join(h.strip() for h in (ns.hosts or "").split(",") if h.strip())
        if not hosts:
            raise SystemExit("--store cql needs --hosts HOST:PORT (or --store cql://HOST:PORT/KEYSPACE)")
        return f"cql://{hosts}/{ns.keyspace or keyspace}"
    if store == "memory":
        return "memory://"
    raise SystemExit(f"--store {store!r} is not a store URL ({_URL_HELP})")


def _open_store(ns: argparse.Namespace, **options: Any) -> Any:
    from .store import open_store

    url = store_url(ns, "dna.db", "dna")
    try:
        return open_store(url, **options)
    except (ValueError, ImportError) as exc:
        raise SystemExit(f"dna {ns.command}: {exc}") from None


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", type=int, default=1_000_000, help="cast puts (default 1,000,000)")
    p.add_argument("--actors", type=int, default=1, help="spread the puts over K actors")
    _store_args(p, "sqlite")  # bare "sqlite": a temporary file
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
    store = "sqlite" if ns.store == "sqlite" and not ns.path else store_url(ns, "", "dna_bench")
    cfg = BenchConfig(
        n=ns.n,
        actors=ns.actors,
        store=store,
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
    store = _open_store(ns)

    async def run() -> None:
        node = Node(
            store=store, listen=ns.listen, secret=_read_secret(ns.secret_file),
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


async def _status_rows(store: Any) -> list[Any]:
    """Every node but status probes. On a lease store a node first seen is not
    judged yet: look again for up to three heartbeat intervals (the lease at most)."""
    from .node import new_node_id

    await store.open(f"status-{new_node_id()}", "")
    try:
        loop = asyncio.get_running_loop()
        beat = store.heartbeat_interval or 1.0
        deadline = loop.time() + (0 if store.lease is None else min(store.lease, 3 * beat))
        while True:
            rows = [r for r in await store.nodes() if not r.node_id.startswith("status-")]
            if all(r.state != "unknown" for r in rows) or loop.time() >= deadline:
                return rows
            await asyncio.sleep(beat / 2)
    finally:
        await store.close()


def cmd_status(ns: argparse.Namespace) -> int:
    from .errors import StoreError

    store = _open_store(ns, create=False)  # a status never creates a database
    try:
        rows = asyncio.run(_status_rows(store))
    except StoreError as exc:
        print(f"dna status: {exc}", file=sys.stderr)
        return 1
    if ns.json:
        print(json.dumps([{"node_id": r.node_id, "address": r.address, "alive": r.alive,
                           "state": r.state, "heartbeat_age": r.heartbeat_age,
                           "draining": r.draining, "activations": r.load} for r in rows]))
        return 0
    print(f"{'node':<36} {'address':<22} {'state':<8} {'beat age':<9} {'draining':<9} "
          "activations")
    for r in rows:
        age = "-" if r.heartbeat_age is None else f"{r.heartbeat_age:.1f}s"
        print(f"{r.node_id:<36} {r.address:<22} {r.state:<8} {age:<9} "
              f"{'yes' if r.draining else 'no':<9} {r.load}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dna", description="Durable Named Actors")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="the seed benchmark: N cast puts, then one call")
    _bench_args(bench)
    bench.set_defaults(func=cmd_bench)
    node = sub.add_parser("node", help="run a node process (SIGTERM drains it)")
    _store_args(node, "sqlite://dna.db")
    node.add_argument("--listen", default="127.0.0.1:7101", help="HOST:PORT for peers")
    node.add_argument("--secret-file", help="file holding the cluster secret")
    node.add_argument("--insecure", action="store_true",
                      help="allow a non-loopback listen address without a secret")
    node.add_argument("--app", action="append", help="module defining actor classes (repeatable)")
    node.add_argument("--passivate-after", type=float, default=300.0)
    node.set_defaults(func=cmd_node)
    status = sub.add_parser("status", help="list the cluster's nodes")
    _store_args(status, "sqlite://dna.db")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    rc: int = ns.func(ns)
    return rc

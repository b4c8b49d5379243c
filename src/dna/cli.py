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
    result = asyncio.run(run_bench(cfg))
    if ns.json:
        print(json.dumps(result))
    else:
        _print_bench(result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dna", description="Durable Named Actors")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="the seed benchmark: N cast puts, then one call")
    _bench_args(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    rc: int = ns.func(ns)
    return rc

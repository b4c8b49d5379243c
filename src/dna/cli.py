"""The ``dna`` command (also ``python -m dna``).

Every failure a user can cause or meet (a bad option, an unusable file, a
store that cannot be used, an address taken) is one line on stderr and one of
the exit codes below, never a traceback. An unexpected error keeps its
traceback (exit 1): that is a bug to report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn
from urllib.parse import quote

__all__ = [
    "EXIT_ADDRESS",
    "EXIT_CONFIG",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_STORE",
    "EXIT_USAGE",
    "CLIError",
    "main",
    "store_url",
]

EXIT_OK = 0
EXIT_STORE = 1  # the store cannot be used: unreachable, missing, foreign, failing
EXIT_USAGE = 2  # the command line is wrong: an option, a store URL, a listen string
EXIT_CONFIG = 3  # a file or module named on the command line cannot be used
EXIT_ADDRESS = 4  # an address to listen on cannot be had: in use, not ours, not allowed
EXIT_NOT_FOUND = 5  # dna actors / inspect: no actor of that type, or of that name, in the store

EXIT_CODES = f"""exit codes:
  {EXIT_OK}  success (dna node: drained and stopped after SIGTERM/SIGINT)
  {EXIT_STORE}  the store cannot be used (unreachable, missing, not a DNA database)
  {EXIT_USAGE}  bad command line (option, store URL, listen address, no secret off loopback)
  {EXIT_CONFIG}  a file or module named on the command line cannot be used (--secret-file,
     --app, a missing extra such as prometheus_client for --metrics)
  {EXIT_ADDRESS}  cannot listen (--listen, --metrics, --health): address in use or unavailable
  {EXIT_NOT_FOUND}  dna actors / dna inspect: no actor of that type (or name) in the store
"""


class CLIError(Exception):
    """An expected failure: ``main`` prints ``dna <command>: <message>`` and exits ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def fail(code: int, message: str) -> NoReturn:
    raise CLIError(code, message)

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
            fail(EXIT_USAGE, f"--path, --hosts and --keyspace do not go with a store URL: "
                 f"put them in the URL ({_URL_HELP})")
        return store
    if store == "sqlite":
        return "sqlite://" + quote(ns.path or sqlite_path, safe="/")
    if store == "cql":
        hosts = ",".join(h.strip() for h in (ns.hosts or "").split(",") if h.strip())
        if not hosts:
            fail(EXIT_USAGE,
                 "--store cql needs --hosts HOST:PORT (or --store cql://HOST:PORT/KEYSPACE)")
        return f"cql://{hosts}/{ns.keyspace or keyspace}"
    if store == "memory":
        return "memory://"
    fail(EXIT_USAGE, f"--store {store!r} is not a store URL ({_URL_HELP})")


def open_store_arg(ns: argparse.Namespace, **options: Any) -> Any:
    """The (unopened) store ``--store`` names; a bad URL or a missing driver is a CLIError."""
    from .store import open_store

    url = store_url(ns, "dna.db", "dna")
    try:
        return open_store(url, **options)
    except ValueError as exc:
        fail(EXIT_USAGE, str(exc))
    except ImportError as exc:
        fail(EXIT_CONFIG, str(exc))


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", type=int, default=1_000_000, help="cast puts (default 1,000,000)")
    p.add_argument("--actors", type=int, default=1,
                   help="spread the puts over K actors (default: 1)")
    _store_args(p, "sqlite")  # bare "sqlite": a temporary file
    p.add_argument("--ceiling", action="store_true",
                   help="first measure raw store ingest, then compare")
    p.add_argument("--max-batch", type=int, default=5_000,
                   help="messages per batch and commit (default 5,000)")
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
        fail(EXIT_USAGE, "-n and --actors must be at least 1")
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
                  f"p99 {result['remote_call_p99_us']:.0f} us; plain asyncio TCP echo p50 "
                  f"{result['echo_p50_us']:.0f} us (call/echo {result['call_vs_echo']:.2f})")
            print(f"CPU per put: client {result['client_cpu_us_per_put']:.2f} us, "
                  f"server {result['server_cpu_us_per_put']:.2f} us")
        return 0
    result = asyncio.run(run_bench(cfg))
    if ns.json:
        print(json.dumps(result))
    else:
        _print_bench(result)
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
    from ._log import escape
    from .errors import StoreError

    store = open_store_arg(ns, create=False)  # a status never creates a database
    try:
        rows = asyncio.run(_status_rows(store))
    except StoreError as exc:
        fail(EXIT_STORE, str(exc))
    if ns.json:
        print(json.dumps([{"node_id": r.node_id, "address": r.address, "alive": r.alive,
                           "state": r.state, "heartbeat_age": r.heartbeat_age,
                           "draining": r.draining, "activations": r.load} for r in rows]))
        return EXIT_OK
    print(f"{'node':<36} {'address':<22} {'state':<8} {'beat age':<9} {'draining':<9} "
          "activations")
    for r in rows:  # node ids and addresses come from other processes: no raw controls
        age = "-" if r.heartbeat_age is None else f"{r.heartbeat_age:.1f}s"
        print(f"{escape(r.node_id):<36} {escape(r.address):<22} {r.state:<8} {age:<9} "
              f"{'yes' if r.draining else 'no':<9} {r.load}")
    return EXIT_OK


class _Parser(argparse.ArgumentParser):
    """argparse, but its usage errors name the subcommand and keep to one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from ._cli_node import add_node_command

    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="dna", description="Durable Named Actors", epilog=EXIT_CODES,
                     formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"dna {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    bench = sub.add_parser("bench", help="the seed benchmark: N cast puts, then one call",
                           epilog=EXIT_CODES, formatter_class=fmt)
    _bench_args(bench)
    bench.set_defaults(func=cmd_bench)
    node = sub.add_parser("node", help="run a node process (SIGTERM drains it)",
                          epilog=EXIT_CODES, formatter_class=fmt)
    add_node_command(node)
    status = sub.add_parser("status", help="list the cluster's nodes (never creates a store)",
                            epilog=EXIT_CODES, formatter_class=fmt)
    _store_args(status, "sqlite://dna.db")
    status.add_argument("--json", action="store_true", help="print one JSON array")
    status.set_defaults(func=cmd_status)
    from ._cli_catalog import add_actors_command, add_inspect_command

    add_actors_command(sub.add_parser(
        "actors", help="list the actors that exist in a store (never creates a store)",
        epilog=EXIT_CODES, formatter_class=fmt))
    add_inspect_command(sub.add_parser(
        "inspect", help="print one actor's stored data by module (never creates a store)",
        epilog=EXIT_CODES, formatter_class=fmt))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dna`` command; returns its exit code (see ``EXIT_CODES``)."""
    ns = build_parser().parse_args(argv)
    try:
        rc: int = ns.func(ns)
    except CLIError as exc:
        print(f"dna {ns.command}: {exc}", file=sys.stderr, flush=True)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return rc

"""``dna node``: run one node process until SIGTERM/SIGINT, then drain it.

Everything a user can get wrong is checked before the node starts and ends
the command with one line and an exit code (``dna.cli``): the listen string,
the secret file (missing, shorter than 16 bytes, readable by other users),
the application modules, the store, the addresses to listen on.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib
import logging
import os
import stat
import sys
import traceback
from typing import Any

from ._gc import DEFAULT_THRESHOLD
from ._log import LEVELS
from .cli import (
    EXIT_ADDRESS,
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_STORE,
    EXIT_USAGE,
    _store_args,
    fail,
    open_store_arg,
)

__all__ = ["MIN_SECRET_BYTES", "add_node_command", "import_apps", "read_secret"]

MIN_SECRET_BYTES = 16  # shorter secrets are refused: they can be guessed offline

log = logging.getLogger("dna.cli")


def add_node_command(p: argparse.ArgumentParser) -> None:
    _store_args(p, "sqlite://dna.db")
    p.add_argument("--listen", default="127.0.0.1:7101", metavar="HOST:PORT",
                   help="where peers connect (port 0 picks one; default: 127.0.0.1:7101)")
    p.add_argument("--advertise", metavar="HOST:PORT",
                   help="the address peers are told to use, when it differs from --listen "
                        "(a pod IP, a NAT; default: the bound listen address)")
    p.add_argument("--secret-file", metavar="FILE",
                   help="file holding the cluster secret: at least 16 bytes, readable by its "
                        "owner only (default: none, loopback only)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --listen without a secret (default: refuse)")
    p.add_argument("--tls-cert", metavar="FILE",
                   help="this node's certificate (PEM) for mutual TLS between nodes; needs "
                        "--tls-key and --tls-ca (default: no TLS)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    p.add_argument("--tls-ca", metavar="FILE",
                   help="the CA (PEM) every peer's certificate must be signed by")
    p.add_argument("--app", action="append", metavar="MODULE",
                   help="module defining actor classes, imported from the current directory "
                        "first, as python -m does (repeatable; default: dna.examples)")
    p.add_argument("--passivate-after", type=float, default=300.0, metavar="SECONDS",
                   help="idle seconds before an activation is passivated (default: 300)")
    p.add_argument("--weight", type=float, default=1.0, metavar="W",
                   help="this node's share of placement: a node of weight 2 gets twice the "
                        "actors of a node of weight 1 (default: 1)")
    p.add_argument("--rebalance-rate", type=float, default=100.0, metavar="ACTORS_PER_S",
                   help="when this node holds more than its share of the cluster's actors, "
                        "hand the surplus to peers below theirs at most this fast "
                        "(0: never; default: 100)")
    p.add_argument("--gc-threshold", type=int, default=DEFAULT_THRESHOLD, metavar="N",
                   help="the cyclic collector's young-generation threshold while the node "
                        "runs, if the process kept CPython's 700 (0: leave it; default: "
                        "%(default)s, as Node)")
    p.add_argument("--trace-file", metavar="FILE",
                   help="trace calls with OpenTelemetry, each finished span appended to FILE "
                        "as one JSON a line (needs pip install 'dna-actors[otel]'; "
                        "default: off)")
    p.add_argument("--log-level", default="INFO", choices=LEVELS, type=str.upper,
                   help="least level logged to stderr (default: INFO)")
    p.add_argument("--log-format", default="text", choices=("text", "json"),
                   help="text lines, or one JSON object a line with time, level, logger, "
                        "message, exc (default: text)")
    p.add_argument("--failed-call-log-level", default="INFO", choices=LEVELS, type=str.upper,
                   help="level at which a handler's exception is logged with its traceback "
                        "(default: INFO)")
    p.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus metrics at /metrics and health at /healthz, /readyz "
                        "(needs prometheus_client: pip install 'dna-actors[metrics]'; "
                        "default: off)")
    p.add_argument("--health", metavar="HOST:PORT",
                   help="serve only /healthz (200 while the node runs) and /readyz (503 while "
                        "draining); default: off")
    p.set_defaults(func=cmd_node)


def read_secret(path: str) -> bytes:
    """The secret in ``path`` (surrounding whitespace stripped); a CLIError when the file
    is missing, not a regular file, readable or writable by group or others, or too short."""
    try:
        fd = os.open(path, os.O_RDONLY)  # symlinks followed: Kubernetes mounts secrets so
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                fail(EXIT_CONFIG, f"secret file {path} is not a regular file")
            if st.st_mode & 0o077:
                fail(EXIT_CONFIG,
                     f"secret file {path} is readable by other users (mode "
                     f"{stat.S_IMODE(st.st_mode):04o}): chmod 600 {path}")
            with os.fdopen(fd, "rb", closefd=False) as f:
                secret = f.read(1 << 16).strip()
        finally:
            os.close(fd)
    except OSError as exc:
        fail(EXIT_CONFIG, f"cannot read secret file {path}: {exc.strerror or exc}")
    if len(secret) < MIN_SECRET_BYTES:
        fail(EXIT_CONFIG, f"secret file {path} holds {len(secret)} bytes: a secret needs at "
                          f"least {MIN_SECRET_BYTES} (e.g. head -c 32 /dev/urandom | base64)")
    return secret


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {os.path.basename(last.filename)}:{last.lineno})"


def import_apps(modules: list[str]) -> None:
    """Import each module as ``python -m`` would find it: the current directory first."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (mod == exc.name or mod.startswith(exc.name + ".")):
                fail(EXIT_CONFIG, f"cannot import app module {mod!r}: no module named "
                                  f"{exc.name!r} in {cwd} or on sys.path")
            fail(EXIT_CONFIG, f"app module {mod!r} failed to import: "
                              f"{type(exc).__name__}: {exc}{_where(exc)}")
        except Exception as exc:  # the application's own error, named with its place
            fail(EXIT_CONFIG, f"app module {mod!r} failed to import: "
                              f"{type(exc).__name__}: {exc}{_where(exc)}")


def _split(option: str, value: str) -> tuple[str, int]:
    from .cluster import split_listen

    try:
        return split_listen(value)
    except ValueError:
        fail(EXIT_USAGE, f"{option} must be HOST:PORT (port 0-65535), got {value!r}")


def _listen_failed(option: str, value: str, exc: OSError) -> None:
    why = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        why = "address already in use"
    fail(EXIT_ADDRESS, f"cannot listen on {value} ({option}): {why}")


def cmd_node(ns: argparse.Namespace) -> int:
    from . import _log

    _split("--listen", ns.listen)
    if not (ns.weight > 0 and ns.weight < float("inf")):
        fail(EXIT_USAGE, f"--weight must be a positive number, got {ns.weight}")
    if not ns.rebalance_rate >= 0:
        fail(EXIT_USAGE, f"--rebalance-rate must be 0 or more, got {ns.rebalance_rate}")
    if ns.gc_threshold < 0:
        fail(EXIT_USAGE, f"--gc-threshold must be 0 or more, got {ns.gc_threshold}")
    for option in ("advertise", "metrics", "health"):
        value = getattr(ns, option)
        if value is not None:
            _split(f"--{option}", value)
    if ns.metrics is not None:
        from .metrics import have_prometheus_client

        if not have_prometheus_client():
            fail(EXIT_CONFIG, "--metrics needs prometheus_client: "
                              "pip install 'dna-actors[metrics]'")
    secret = read_secret(ns.secret_file) if ns.secret_file is not None else None
    if ns.trace_file is not None:
        _trace_to(ns.trace_file)
    tls = _tls(ns)
    import_apps(ns.app or ["dna.examples"])
    _log.configure(ns.log_level, ns.log_format)
    store = open_store_arg(ns)
    asyncio.run(_run(ns, store, secret, tls))
    return EXIT_OK


def _trace_to(path: str) -> None:
    from . import _trace
    from .errors import InterfaceError

    try:
        _trace.enable(_trace.trace_file_provider(path))
    except InterfaceError as exc:
        fail(EXIT_CONFIG, str(exc))
    except OSError as exc:
        fail(EXIT_CONFIG, f"cannot write trace file {path}: {exc.strerror or exc}")


def _tls(ns: argparse.Namespace) -> tuple[Any, Any]:
    """Mutual TLS contexts from --tls-cert/--tls-key/--tls-ca, or (None, None)."""
    files = (ns.tls_cert, ns.tls_key, ns.tls_ca)
    if not any(files):
        return None, None
    if not all(files):
        fail(EXIT_USAGE, "--tls-cert, --tls-key and --tls-ca go together (mutual TLS)")
    from .errors import InterfaceError
    from .transport import tls_contexts

    try:
        return tls_contexts(ns.tls_cert, ns.tls_key, ns.tls_ca)
    except (InterfaceError, OSError, ValueError) as exc:
        fail(EXIT_CONFIG, f"TLS files cannot be used: {exc}")


async def _start(ns: argparse.Namespace, node: Any) -> None:
    from .errors import DNAError, InterfaceError, StoreError

    try:
        await node.start()
    except OSError as exc:
        if node.address is None:  # the listener failed (the store wraps its own errors)
            _listen_failed("--listen", ns.listen, exc)
        fail(EXIT_STORE, f"{type(exc).__name__}: {exc}")
    except StoreError as exc:
        fail(EXIT_STORE, str(exc))
    except (InterfaceError, ValueError) as exc:
        fail(EXIT_USAGE, str(exc))
    except DNAError as exc:
        fail(EXIT_STORE, f"{type(exc).__name__}: {exc}")


async def _run(
    ns: argparse.Namespace, store: Any, secret: bytes | None, tls: tuple[Any, Any]
) -> None:
    import signal

    from .node import Node

    node = Node(
        store=store, listen=ns.listen, secret=secret, insecure=ns.insecure,
        ssl=tls[0], client_ssl=tls[1], passivate_after=ns.passivate_after,
        failed_call_log_level=logging.getLevelName(ns.failed_call_log_level),
        weight=ns.weight, rebalance_rate=ns.rebalance_rate,
        gc_threshold=ns.gc_threshold or None,
    )
    if ns.advertise is not None:
        node.cluster.advertise = ns.advertise
    # the CQL driver logs each failed connect with a traceback: while starting, the
    # store's own error (one line, exit 1) says it better
    driver = logging.getLogger("cassandra")
    driver_level = driver.level
    if ns.log_level != "DEBUG":
        driver.setLevel(logging.CRITICAL)
    try:
        await _start(ns, node)
    finally:
        driver.setLevel(driver_level)
    servers: list[Any] = []
    try:
        for option, value in (("--metrics", ns.metrics), ("--health", ns.health)):
            if value is not None:
                servers.append(await _serve_ops(node, option, value, option == "--metrics"))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"dna node {node.node_id} listening on {node.address}", flush=True)
        for server in servers:
            host, port = server.address
            paths = "/metrics, /healthz, /readyz" if server.registry else "/healthz, /readyz"
            print(f"dna node {node.node_id} serving {paths} on http://{host}:{port}",
                  flush=True)
        log.info("node %s listening on %s", node.node_id, node.address)
        await stop.wait()
        print(f"dna node {node.node_id} draining", flush=True)
        log.info("node %s draining", node.node_id)
        try:
            await node.drain()
        except Exception as exc:  # the store went away: stop() still releases what it can
            log.error("drain failed: %r", exc)
        print(f"dna node {node.node_id} stopped", flush=True)
    finally:
        await node.stop()
        for server in servers:
            await server.close()


async def _serve_ops(node: Any, option: str, value: str, metrics: bool) -> Any:
    from .metrics import OpsServer

    host, port = _split(option, value)
    server = OpsServer(node, metrics=metrics)
    try:
        await server.start(host, port)
    except OSError as exc:
        _listen_failed(option, value, exc)
    return server

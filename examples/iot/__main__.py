"""``python -m examples.iot run|cluster|web|simulate`` (from the repository root).

- ``run``: one process on SQLite: a node hosting the actors, the web app and the simulator.
- ``cluster``: two ``dna node`` processes on one SQLite file, plus the web process as a
  client node (which also runs the simulator through refs).
- ``web``: the web process alone (``cluster`` starts it; tests use it).
- ``simulate``: drive devices of a running web process through its HTTP API.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from .harness import ROOT, child_env


def _sim_args(p: argparse.ArgumentParser, rate: float) -> None:
    p.add_argument("--sites", type=int, default=2, help="simulated sites (default 2)")
    p.add_argument("--devices", type=int, default=4, help="simulated devices per site (default 4)")
    p.add_argument("--rate", type=float, default=rate,
                   help=f"readings/s per device (default {rate:g}; 0: no simulator)")


def _web_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--poll", type=float, default=0.02,
                   help="seconds between the web's polls of a watched actor (default 0.02)")


def _read_secret(path: str | None) -> bytes | None:
    if path is None:
        return None
    secret = Path(path).read_bytes().strip()
    if not secret:
        raise SystemExit(f"secret file {path} is empty")
    return secret


def cmd_web(ns: argparse.Namespace, store: str | None = None) -> int:
    from .server import WebConfig, serve

    cfg = WebConfig(store=store or ns.store, host=ns.host, port=ns.port, client=ns.client,
                    listen=getattr(ns, "listen", None), secret=_read_secret(
                        getattr(ns, "secret_file", None)),
                    sites=ns.sites, devices=ns.devices, rate=ns.rate, poll=ns.poll)
    if cfg.client and not cfg.listen:
        cfg.listen = "127.0.0.1:0"
    asyncio.run(serve(cfg))
    return 0


def cmd_run(ns: argparse.Namespace) -> int:
    ns.client = False
    return cmd_web(ns, store="sqlite://" + str(Path(ns.db).resolve()))


def cmd_simulate(ns: argparse.Namespace) -> int:
    from .simulator import HttpSink, Simulator, device_names

    async def run() -> None:
        sink = HttpSink(ns.url)
        sim = Simulator(sink, device_names(ns.sites, ns.devices), ns.rate, batch=ns.batch)
        sim.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"simulating {len(sim.names)} devices at {ns.rate:g}/s each against {ns.url}",
              flush=True)
        await stop.wait()
        await sim.stop()
        await sink.close()
        print(f"sent {sim.sent}, failed {sim.failed}")

    asyncio.run(run())
    return 0


def cluster_commands(db: str, secret_file: str, node_ports: list[int], port: int,
                     extra: list[str]) -> list[list[str]]:
    """The command lines of the cluster: one ``dna node`` per port, then the web process."""
    store = "sqlite://" + str(Path(db).resolve())
    py = sys.executable
    cmds = [[py, "-m", "dna", "node", "--store", store, "--listen", f"127.0.0.1:{p}",
             "--secret-file", secret_file, "--app", "examples.iot.actors"] for p in node_ports]
    cmds.append([py, "-m", "examples.iot", "web", "--store", store, "--client",
                 "--listen", "127.0.0.1:0", "--secret-file", secret_file,
                 "--port", str(port), *extra])
    return cmds


def cmd_cluster(ns: argparse.Namespace) -> int:
    secret_file = Path(ns.db).resolve().with_suffix(".secret")
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(32))
        secret_file.chmod(0o600)
    ports = [int(p) for p in ns.node_ports.split(",")]
    extra = ["--sites", str(ns.sites), "--devices", str(ns.devices), "--rate", str(ns.rate),
             "--poll", str(ns.poll), "--host", ns.host]
    procs: list[subprocess.Popen[Any]] = []
    try:
        for cmd in cluster_commands(ns.db, str(secret_file), ports, ns.port, extra):
            procs.append(subprocess.Popen(cmd, env=child_env(), cwd=ROOT))
        print(f"cluster: nodes pid {', '.join(str(p.pid) for p in procs[:-1])}, "
              f"web pid {procs[-1].pid}; Ctrl-C stops all", flush=True)
        while all(p.poll() is None for p in procs[-1:]):
            try:
                procs[-1].wait(1.0)
            except subprocess.TimeoutExpired:
                pass
    except KeyboardInterrupt:
        pass
    finally:
        for p in reversed(procs):  # the web first, then the nodes drain
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m examples.iot",
                                     description="The DNA IoT example")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="everything in one process on SQLite")
    run.add_argument("--db", default="iot.db", help="SQLite file (default iot.db)")
    _web_args(run)
    _sim_args(run, 2.0)
    run.set_defaults(func=cmd_run)
    cluster = sub.add_parser("cluster", help="two dna node processes + the web as a client node")
    cluster.add_argument("--db", default="iot-cluster.db")
    cluster.add_argument("--node-ports", default="7101,7102")
    _web_args(cluster)
    _sim_args(cluster, 2.0)
    cluster.set_defaults(func=cmd_cluster)
    web = sub.add_parser("web", help="the web process alone")
    web.add_argument("--store", required=True, help="store URL")
    web.add_argument("--client", action="store_true", help="host no actors (a cluster client)")
    web.add_argument("--listen", help="host:port for peers (client nodes)")
    web.add_argument("--secret-file")
    _web_args(web)
    _sim_args(web, 2.0)
    web.set_defaults(func=cmd_web)
    sim = sub.add_parser("simulate", help="drive devices through the HTTP API")
    sim.add_argument("--url", default="http://127.0.0.1:8000")
    sim.add_argument("--batch", action="store_true",
                     help="one POST /api/readings per round instead of one POST per reading")
    _sim_args(sim, 2.0)
    sim.set_defaults(func=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    rc: int = ns.func(ns)
    return rc


if __name__ == "__main__":
    sys.exit(main())

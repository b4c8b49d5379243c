"""Prometheus metrics and health endpoints of a node (``dna node --metrics HOST:PORT``).

``OpsServer(node, metrics=True)`` serves, on the node's own event loop:

- ``/metrics``: the Prometheus text format, built when scraped from what the
  node already keeps (``node.stats``, its routing table, its peers and
  connections), so the hot path pays nothing for it. Needs the optional
  ``prometheus_client`` (``pip install 'dna-actors[metrics]'``).
- ``/healthz`` (liveness): 200 while the node runs, draining included; 503
  once it stopped.
- ``/readyz`` (readiness): 200 while the node runs and is not draining; 503
  otherwise (starting, draining, stopped).

Everything is read on the loop thread, so a scrape sees a consistent node
(no dict changing under it). Metric names start with ``dna_``; see README.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import socket
import struct
from collections.abc import Iterator
from typing import Any

from .stats import COMMIT_BUCKETS

__all__ = ["COMMIT_BUCKETS", "NodeCollector", "OpsServer", "have_prometheus_client"]

log = logging.getLogger("dna.metrics")

BATCH_BUCKET_POWERS = 16  # batch size buckets 1, 2, 4 ... 65536 (more when seen)
_MAX_REQUEST = 8192  # bytes of an HTTP request head we read
_REQUEST_TIMEOUT = 5.0  # seconds a client has to send its request head


def have_prometheus_client() -> bool:
    return importlib.util.find_spec("prometheus_client") is not None


def _tcp_bytes(sock: Any) -> tuple[int, int] | None:
    """``(bytes acknowledged by the peer, bytes received)`` of a TCP socket (Linux
    ``TCP_INFO``: tcpi_bytes_acked at offset 120, tcpi_bytes_received at 128), or None."""
    opt = getattr(socket, "TCP_INFO", None)
    if sock is None or opt is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, opt, 256)
    except OSError:
        return None
    if len(info) < 136:
        return None
    acked, received = struct.unpack_from("=QQ", info, 120)
    return int(acked), int(received)


class NodeCollector:
    """A prometheus_client collector reading one node's state at scrape time."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        node = self.node
        stats = node.stats
        up = GaugeMetricFamily("dna_node_up", "1 while the node runs (draining included)")
        up.add_metric([], 1.0 if node.running else 0.0)
        yield up
        draining = GaugeMetricFamily("dna_node_draining", "1 while the node drains")
        draining.add_metric([], 1.0 if node.draining else 0.0)
        yield draining
        info = GaugeMetricFamily("dna_node_info", "the node's id, address and store",
                                 labels=["node_id", "address", "store"])
        info.add_metric([node.node_id, node.address or "", node.store.kind], 1.0)
        yield info
        msgs = CounterMetricFamily("dna_messages", "messages dispatched to handlers",
                                   labels=["actor_type"])
        for atype, n in list(stats.by_type.items()):
            msgs.add_metric([_type_name(atype)], n)
        yield msgs
        errors = CounterMetricFamily("dna_handler_errors", "handlers that raised (calls and "
                                     "casts)", labels=["actor_type"])
        for atype, n in list(stats.errors.items()):
            errors.add_metric([_type_name(atype)], n)
        yield errors
        yield self._batch_histogram()
        yield self._commit_histogram()
        for name, doc, value in (
            ("dna_commit_rows", "rows written by successful commits", stats.commit_rows),
            ("dna_claims", "names claimed in the store (activations begun)", stats.claims),
            ("dna_passivations", "activations passivated (idle, drain, stop)",
             stats.passivations),
            ("dna_forwarded_messages", "messages forwarded to the peer owning their actor",
             stats.forwards),
        ):
            c = CounterMetricFamily(name, doc)
            c.add_metric([], value)
            yield c
        yield from self._routes()
        yield from self._peers()

    def _batch_histogram(self) -> Any:
        from prometheus_client.core import HistogramMetricFamily

        stats = self.node.stats
        sizes = list(stats.batch_sizes)
        top = max([BATCH_BUCKET_POWERS, *(k for k, n in enumerate(sizes) if n)])
        buckets: list[tuple[str, float]] = []
        total = 0
        for k in range(top + 1):
            total += sizes[k]
            buckets.append((str(float(2**k)), total))
        buckets.append(("+Inf", total))
        return HistogramMetricFamily("dna_batch_size", "messages per batch",
                                     buckets=buckets, sum_value=stats.messages)

    def _commit_histogram(self) -> Any:
        from prometheus_client.core import HistogramMetricFamily

        stats = self.node.stats  # the node keeps the histogram: no list of every commit
        counts = stats.commit_counts
        buckets: list[tuple[str, float]] = []
        total = 0
        for edge, n in zip((*COMMIT_BUCKETS, "+Inf"), counts, strict=True):
            total += n
            buckets.append((str(edge), total))
        return HistogramMetricFamily("dna_commit_seconds", "store commit latency",
                                     buckets=buckets, sum_value=stats.commit_sum)

    def _routes(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from .activation import Activation

        acts: dict[str, int] = {}
        depth: dict[str, int] = {}
        deepest: dict[str, int] = {}
        remote = remote_depth = 0
        for route in list(self.node._routes.values()):
            n = len(route.inbox)
            if isinstance(route, Activation):
                name = _type_name(route.atype)
                acts[name] = acts.get(name, 0) + 1
                depth[name] = depth.get(name, 0) + n
                deepest[name] = max(deepest.get(name, 0), n)
            else:
                remote += 1
                remote_depth += n
        for metric, doc, values in (
            ("dna_activations", "live activations on this node", acts),
            ("dna_mailbox_depth", "messages queued in this type's mailboxes", depth),
            ("dna_mailbox_depth_max", "the deepest mailbox of this type", deepest),
        ):
            g = GaugeMetricFamily(metric, doc, labels=["actor_type"])
            for name, v in sorted(values.items()):
                g.add_metric([name], v)
            yield g
        g = GaugeMetricFamily("dna_remote_routes", "actors routed to a peer from here")
        g.add_metric([], remote)
        yield g
        g = GaugeMetricFamily("dna_remote_queue_depth", "messages waiting to go to peers")
        g.add_metric([], remote_depth)
        yield g

    def _peers(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        cluster = self.node.cluster
        states: dict[str, int] = {}
        for rec in cluster.peers:
            if rec.node_id != self.node.node_id:
                states[rec.state] = states.get(rec.state, 0) + 1
        g = GaugeMetricFamily("dna_cluster_peers", "other nodes in the store's nodes table, "
                              "by liveness as judged here", labels=["state"])
        for state, n in sorted(states.items()):
            g.add_metric([state], n)
        yield g
        conns = cluster.transport.connections() if cluster.transport is not None else []
        ready = sum(1 for authenticated, _ in conns if authenticated)
        g = GaugeMetricFamily("dna_peer_connections", "TCP connections with peers",
                              labels=["state"])
        g.add_metric(["authenticated"], ready)
        g.add_metric(["other"], len(conns) - ready)
        yield g
        sent = received = 0
        known = False
        for _, sock in conns:
            got = _tcp_bytes(sock)
            if got is not None:
                known = True
                sent += got[0]
                received += got[1]
        if known:  # Linux only; bytes of connections open now (a closed one leaves the sum)
            g = GaugeMetricFamily("dna_peer_connection_bytes", "bytes sent (acknowledged) "
                                  "and received on the open peer connections",
                                  labels=["direction"])
            g.add_metric(["out"], sent)
            g.add_metric(["in"], received)
            yield g
        last = self.node.store.last_heartbeat
        if last is not None and self.node.running:
            g = GaugeMetricFamily("dna_lease_heartbeat_age_seconds",
                                  "seconds since the last heartbeat known to have succeeded")
            g.add_metric([], self.node.loop.time() - last)
            yield g


def _type_name(atype: Any) -> str:
    return str(getattr(atype, "type_name", atype))


class OpsServer:
    """A tiny HTTP server for ``/metrics``, ``/healthz`` and ``/readyz`` (module docstring)."""

    def __init__(self, node: Any, *, metrics: bool = True) -> None:
        self.node = node
        self.registry: Any = None
        if metrics:
            from prometheus_client import CollectorRegistry, ProcessCollector

            self.registry = CollectorRegistry(auto_describe=False)
            self.registry.register(NodeCollector(node))
            ProcessCollector(registry=self.registry)
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None  # bound host and port, once started

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._serve, host, port)
        bound = self._server.sockets[0].getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """``(status, content type, body)`` for a GET of ``path``."""
        node = self.node
        if path == "/healthz":
            ok = node.running
            return (200 if ok else 503), "text/plain", b"ok\n" if ok else b"stopped\n"
        if path == "/readyz":
            ok = node.running and not node.draining
            why = b"ok\n" if ok else b"draining\n" if node.draining else b"not running\n"
            return (200 if ok else 503), "text/plain", why
        if path == "/metrics" and self.registry is not None:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        return 404, "text/plain", b"not found\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _REQUEST_TIMEOUT)
            parts = head[:_MAX_REQUEST].split(b"\r\n", 1)[0].split()
            if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
                status, ctype, body = 405, "text/plain", b"GET only\n"
            else:
                path = parts[1].split(b"?", 1)[0].decode("ascii", "replace")
                status, ctype, body = self.respond(path)
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
                      503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            )
            if parts[:1] != [b"HEAD"]:
                writer.write(body)
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass  # a client that does not speak HTTP, or left: nothing to answer
        except Exception:
            log.exception("metrics request failed")
        finally:
            writer.close()

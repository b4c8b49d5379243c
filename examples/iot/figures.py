"""Figures for the IoT example (not a test): ``python -m examples.iot.figures``.

1. readings/s sustained end to end through refs: the simulator casts as fast as
   the actors take them (``Device.record``: stored in KV, windowed, cast to the
   ``Site``), one process on SQLite; counted as readings durably stored (each
   device's ``seq`` read back by a gated call) per second.
2. the same through the HTTP API: a web process on SQLite, readings POSTed by
   ``--http-clients`` concurrent connections from this process.
3. page-update latency from the browser: a web process simulating devices at
   ``--rate``/s each, the device page open in headless Chromium; for every reading
   the page draws, the time from its timestamp (set by the simulator) to the frame
   that shows it, p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dna
from dna.store import open_store

from .actors import Device, device_key
from .harness import new_chromium, start_web
from .simulator import HttpSink, RefSink, Simulator, device_names


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def stored(node: Any, names: list[tuple[str, str]]) -> int:
    refs = [node.ref(Device, device_key(s, d)) for s, d in names]
    return sum(r["seq"] for r in await asyncio.gather(*(ref.since(-2) for ref in refs)))


async def refs_rate(tmp: Path, devices: int, seconds: float) -> dict[str, Any]:
    names = device_names(1, devices)
    async with dna.Node(store=open_store(f"sqlite://{tmp / 'refs.db'}")) as node:
        sim = Simulator(RefSink(node), names, rate=0)
        t0 = time.perf_counter()
        sim.start()
        await asyncio.sleep(seconds)
        n = await stored(node, names)
        elapsed = time.perf_counter() - t0
        await sim.stop()
    return {"readings_stored": n, "seconds": elapsed, "readings_per_s": n / elapsed,
            "devices": devices, "sent": sim.sent}


def _web(tmp: Path, name: str, *args: str) -> tuple[Any, str]:
    d = tmp / name
    d.mkdir()
    return start_web(d, f"sqlite://{d / 'iot.db'}", *args)


async def _http_rate(url: str, devices: int, seconds: float, clients: int,
                     batch: bool) -> dict[str, Any]:
    names = device_names(1, devices)
    sink = HttpSink(url, concurrency=clients)
    sim = Simulator(sink, names, rate=0, batch=batch)
    t0 = time.perf_counter()
    sim.start()
    await asyncio.sleep(seconds)
    # the devices' seq as their Site actors last heard it (a gated call: durable)
    _status, sites = await sink.request("GET", "/api/sites")
    elapsed = time.perf_counter() - t0
    await sim.stop()
    await sink.close()
    n = sum(site["readings"] for site in sites)
    return {"readings_stored": n, "seconds": elapsed, "readings_per_s": n / elapsed,
            "devices": devices, "acknowledged": sim.sent, "failed": sim.failed}


def http_rate(tmp: Path, devices: int, seconds: float, clients: int,
              batch: bool) -> dict[str, Any]:
    web, url = _web(tmp, "http-batch" if batch else "http", "--rate", "0")
    try:
        return asyncio.run(_http_rate(url, devices, seconds, clients, batch))
    finally:
        web.stop()


def latency(tmp: Path, devices: int, rate: float, seconds: float) -> dict[str, Any]:
    web, url = _web(tmp, "latency", "--sites", "1", "--devices", str(devices),
                    "--rate", str(rate))
    driver = new_chromium(tmp / "profile")
    try:
        driver.get(url + "/devices/site-1/sensor-01")
        time.sleep(1.0)  # let the page settle (the first updates include the page load)
        driver.execute_script("IoT.latencies.length = 0")
        time.sleep(seconds)
        lat: list[float] = driver.execute_script("return IoT.latencies")
    finally:
        driver.quit()
        web.stop()
    return {"samples": len(lat), "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
            "mean_ms": statistics.fmean(lat) if lat else None,
            "devices": devices, "rate_per_device": rate}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.iot.figures", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="per measurement (default 10)")
    p.add_argument("--devices", type=int, default=16, help="devices for the rates (default 16)")
    p.add_argument("--http-clients", type=int, default=32)
    p.add_argument("--batch-devices", type=int, default=256,
                   help="devices per batched POST /api/readings (default 256)")
    p.add_argument("--latency-devices", type=int, default=8)
    p.add_argument("--rate", type=float, default=10.0,
                   help="readings/s per device for the latency run (default 10)")
    p.add_argument("--json", action="store_true")
    ns = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="iot-figures-") as d:
        tmp = Path(d)
        out = {
            "refs": asyncio.run(refs_rate(tmp, ns.devices, ns.seconds)),
            "http": http_rate(tmp, ns.devices, ns.seconds, ns.http_clients, False),
            "http_batch": http_rate(tmp, ns.batch_devices, ns.seconds, ns.http_clients, True),
            "latency": latency(tmp, ns.latency_devices, ns.rate, ns.seconds),
        }
    if ns.json:
        print(json.dumps(out))
        return 0
    r, h, hb, lat = out["refs"], out["http"], out["http_batch"], out["latency"]
    print(f"through refs : {r['readings_per_s']:,.0f} readings/s stored "
          f"({r['readings_stored']:,} in {r['seconds']:.1f} s, {r['devices']} devices)")
    print(f"through HTTP : {h['readings_per_s']:,.0f} readings/s stored "
          f"({h['readings_stored']:,} in {h['seconds']:.1f} s, {h['devices']} devices, "
          f"{ns.http_clients} connections, {h['failed']} failed)")
    print(f"HTTP batched : {hb['readings_per_s']:,.0f} readings/s stored "
          f"({hb['readings_stored']:,} in {hb['seconds']:.1f} s, one POST /api/readings "
          f"per round of {hb['devices']} devices, {hb['failed']} failed)")
    print(f"page update  : p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms "
          f"({lat['samples']} readings drawn; {lat['devices']} devices at "
          f"{lat['rate_per_device']:g}/s, page on one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The actors of the IoT example: one ``Device`` per sensor, one ``Site`` per site,
and the ``Fleet`` that lists the sites.

A device key is ``"<site>/<device>"``. Each reading is stored in the device's
KV under ``r/<seq>`` (the newest ``KEEP`` are kept) with the device's state under
``state``; the window statistics (min/max/avg over the last ``WINDOW`` readings)
live only in memory and are rebuilt from the stored readings in ``on_activate``.
Every reading is also cast to the device's ``Site``, which keeps the per-site
dashboard. The web layer only forwards requests to these actors and renders
what they return.
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any

import dna
from dna.storage import KV

__all__ = ["COMMANDS", "KEEP", "WINDOW", "Device", "Fleet", "Site", "device_key", "split_key"]

WINDOW = 60  # readings the min/max/avg cover
KEEP = 2_000  # readings kept in storage per device (older ones are deleted)
RECENT = 200  # readings `since` returns at most
COMMANDS = ("ping", "calibrate", "set_threshold", "reset_window", "rename")


def device_key(site: str, device: str) -> str:
    """The actor key of ``device`` at ``site``; ValueError for names the URLs cannot carry."""
    for what, name in (("site", site), ("device", device)):
        if not name or "/" in name or len(name) > 64 or not name.isprintable():
            raise ValueError(f"bad {what} name {name!r}: 1-64 printable characters, no '/'")
    return f"{site}/{device}"


def split_key(key: str) -> tuple[str, str]:
    site, _, device = key.partition("/")
    return site, device


def _rkey(seq: int) -> str:
    return f"r/{seq:012d}"


def _node_info(actor: dna.Actor) -> dict[str, Any]:
    return {"node": actor.node.node_id, "pid": os.getpid()}


class Device(dna.Actor):
    """A sensor: readings in, window statistics and commands out."""

    type_name = "iot.Device"
    kv = KV()

    async def on_activate(self) -> None:
        self.site, self.device = split_key(self.key)
        self.site_ref = self.node.ref(Site, self.site)  # kept: it re-routes by itself
        state = await self.kv.read("state")
        self.state: dict[str, Any] = state or {
            "seq": 0, "offset": 0.0, "threshold": None, "label": self.device,
            "commands": 0, "version": 0, "registered": False,
        }
        self.window: deque[list[float]] = deque(maxlen=WINDOW)
        seq = self.state["seq"]
        if seq:  # rebuild the in-memory window from the newest stored readings
            first = max(0, seq - WINDOW)
            rows = await self.kv.list("r/", WINDOW, _rkey(first))
            for _k, row in rows:
                self.window.append(row)
        self.activated_at = time.time()

    def _save(self) -> None:
        self.state["version"] += 1
        self.kv.write("state", self.state)

    def stats(self) -> dict[str, Any]:
        """Window statistics over the newest readings held in memory."""
        values = [r[2] for r in self.window]
        if not values:
            return {"n": 0, "min": None, "max": None, "avg": None, "last": None}
        return {"n": len(values), "min": min(values), "max": max(values),
                "avg": sum(values) / len(values), "last": values[-1]}

    def summary(self) -> dict[str, Any]:
        st = self.stats()
        threshold = self.state["threshold"]
        alarm = threshold is not None and st["last"] is not None and st["last"] > threshold
        return {"device": self.device, "label": self.state["label"], "seq": self.state["seq"],
                "last": st["last"], "avg": st["avg"], "alarm": alarm,
                "ts": self.window[-1][1] if self.window else None}

    async def _register(self) -> None:
        if not self.state["registered"]:
            await self.site_ref.register(self.device)
            self.state["registered"] = True

    @dna.cast
    async def record(self, ts: float, value: float) -> None:
        """One reading (``ts`` in ms since the epoch): stored, windowed, reported to the site."""
        if not isinstance(value, (int, float)) or not isinstance(ts, (int, float)):
            raise TypeError("a reading is (ts: number, value: number)")
        await self._register()
        seq = self.state["seq"] + 1
        row = [seq, float(ts), float(value) + self.state["offset"]]
        self.kv.write(_rkey(seq), row)
        if seq > KEEP:
            self.kv.delete(_rkey(seq - KEEP))
        self.window.append(row)
        self.state["seq"] = seq
        self._save()
        await self.site_ref.report(self.summary())

    @dna.call
    def since(self, seq: int, version: int = -1) -> dict[str, Any]:
        """Readings newer than ``seq`` (from the window, at most ``RECENT``) with the
        statistics and state; only ``{"seq", "version"}`` when nothing changed."""
        out: dict[str, Any] = {"seq": self.state["seq"], "version": self.state["version"]}
        if out["seq"] == seq and out["version"] == version:
            return out
        out["readings"] = [r for r in self.window if r[0] > seq][-RECENT:]
        out["stats"] = self.stats()
        out["state"] = self.public_state()
        return out

    def public_state(self) -> dict[str, Any]:
        s = {k: self.state[k] for k in ("seq", "offset", "threshold", "label", "commands")}
        s.update(_node_info(self), site=self.site, device=self.device)
        return s

    @dna.call
    async def history(self, limit: int = 500) -> list[list[float]]:
        """The newest ``limit`` stored readings, ``[seq, ts, value]``, oldest first."""
        seq = self.state["seq"]
        limit = max(1, min(int(limit), KEEP))
        rows = await self.kv.list("r/", limit, _rkey(max(0, seq - limit)))
        return [row for _k, row in rows]

    @dna.call
    async def command(self, name: str, arg: Any = None) -> dict[str, Any]:
        """Run a command; the result says what changed. ValueError for a bad one."""
        if name not in COMMANDS:
            raise ValueError(f"unknown command {name!r}: one of {', '.join(COMMANDS)}")
        if name == "ping":
            result: Any = "pong"
        elif name == "calibrate":
            self.state["offset"] = _number(arg, "calibrate")
            result = f"offset is now {self.state['offset']:g}"
        elif name == "set_threshold":
            self.state["threshold"] = None if arg in (None, "") else _number(arg, name)
            result = f"alarm threshold is now {self.state['threshold']}"
        elif name == "reset_window":
            self.window.clear()
            result = "window cleared"
        else:
            label = str(arg or "").strip()
            if not label or len(label) > 64:
                raise ValueError("rename takes a label of 1-64 characters")
            self.state["label"] = label
            result = f"label is now {label!r}"
        self.state["commands"] += 1
        self.kv.write(f"cmd/{self.state['commands']:08d}", [time.time() * 1000, name, arg, result])
        await self._register()
        self._save()
        await self.site_ref.report(self.summary())
        return {"command": name, "result": result, "state": self.public_state()}

    @dna.call
    async def commands(self, limit: int = 10) -> list[list[Any]]:
        """The newest ``limit`` commands, ``[ts, name, arg, result]``, newest first."""
        n = self.state["commands"]
        rows = await self.kv.list("cmd/", limit, f"cmd/{max(0, n - limit):08d}")
        return [row for _k, row in reversed(rows)]


def _number(arg: Any, what: str) -> float:
    try:
        value = float(arg)
    except (TypeError, ValueError):
        raise ValueError(f"{what} takes a number, not {arg!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{what} takes a finite number")
    return value


class Site(dna.Actor):
    """A site's dashboard: its devices and their latest summaries, aggregated."""

    type_name = "iot.Site"
    kv = KV()

    async def on_activate(self) -> None:
        self.devices: dict[str, dict[str, Any]] = dict(await self.kv.list("d/", 10_000))
        self.devices = {k[2:]: v for k, v in self.devices.items()}
        self.version = 0

    @dna.call
    async def register(self, device: str) -> None:
        if device not in self.devices:
            self.devices[device] = {"device": device, "label": device, "seq": 0}
            self.kv.write("d/" + device, self.devices[device])
            if len(self.devices) == 1:
                await self.node.ref(Fleet, "fleet").add_site(self.key)

    @dna.cast
    def report(self, summary: dict[str, Any]) -> None:
        device = summary.get("device")
        if device in self.devices:
            self.devices[device] = summary
            self.kv.write("d/" + device, summary)
            self.version += 1

    @dna.call
    def dashboard(self) -> dict[str, Any]:
        """Every device's summary plus the site's aggregate."""
        devs = sorted(self.devices.values(), key=lambda d: d["device"])
        avgs = [d["avg"] for d in devs if d.get("avg") is not None]
        return {
            "site": self.key, "version": self.version, "devices": devs,
            "readings": sum(d.get("seq", 0) for d in devs),
            "alarms": sum(1 for d in devs if d.get("alarm")),
            "avg": sum(avgs) / len(avgs) if avgs else None,
            **_node_info(self),
        }


class Fleet(dna.Actor):
    """The list of sites (one actor, key ``"fleet"``)."""

    type_name = "iot.Fleet"
    kv = KV()

    @dna.call
    async def add_site(self, site: str) -> None:
        if await self.kv.read("s/" + site) is None:
            self.kv.write("s/" + site, 1)

    @dna.call
    async def sites(self) -> list[str]:
        return [k[2:] for k, _v in await self.kv.list("s/", 10_000)]

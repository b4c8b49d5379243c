"""The web front end: a Starlette app whose pages and API forward to the actors.

Routes:

- ``GET /``: sites and their devices (live over ``GET /events/sites``, SSE)
- ``GET /devices/{site}/{device}``: a device's live chart and command form
  (live over ``GET /events/devices/{site}/{device}``, SSE, event ids = reading seq)
- ``GET /api/sites``, ``GET /api/devices/{site}/{device}``: JSON snapshots
- ``POST /api/devices/{site}/{device}/readings``: ``{"value": v, "ts": ms}`` (ts optional)
- ``POST /api/readings``: ``{"readings": [{"site", "device", "value", "ts"}, ...]}``
- ``POST /api/devices/{site}/{device}/command``: ``{"command": c, "arg": a}``

Retryable DNA errors (a node died with a call in flight, an actor moving) are
retried for a few seconds before the request fails with 503.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import dna
from dna.errors import ActorError, Retryable

from .actors import Device, Fleet, Site, device_key
from .feeds import Feeds, retrying
from .pages import device_page, index_page

__all__ = ["Web"]

STATIC = Path(__file__).with_name("static")
KEEPALIVE = 15.0  # seconds between SSE comments on a quiet stream
MAX_BATCH = 10_000  # readings per POST /api/readings


class BadRequest(Exception):
    pass


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Web:
    """The app around one started ``dna.Node`` (hosting or client)."""

    def __init__(self, node: dna.Node, poll_period: float = 0.02) -> None:
        self.node = node
        self.poll_period = poll_period
        self.feeds = Feeds()
        self.refs: dict[str, Any] = {}  # kept refs: they re-route by themselves
        self.fleet = node.ref(Fleet, "fleet")
        self.app = Starlette(routes=[
            Route("/", self.index),
            Route("/devices/{site}/{device}", self.device),
            Route("/api/sites", self.api_sites),
            Route("/api/devices/{site}/{device}", self.api_device),
            Route("/api/devices/{site}/{device}/readings", self.api_reading, methods=["POST"]),
            Route("/api/readings", self.api_readings, methods=["POST"]),
            Route("/api/devices/{site}/{device}/command", self.api_command, methods=["POST"]),
            Route("/events/sites", self.events_sites),
            Route("/events/devices/{site}/{device}", self.events_device),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ], exception_handlers={BadRequest: self._bad, Retryable: self._unavailable,
                               ActorError: self._actor_error})

    # ------------------------------------------------------------ helpers

    def ref(self, atype: type[dna.Actor], key: str) -> Any:
        r = self.refs.get(atype.type_name + "|" + key)
        if r is None:
            r = self.refs[atype.type_name + "|" + key] = self.node.ref(atype, key)
        return r

    def device_ref(self, request: Request) -> Any:
        try:
            key = device_key(request.path_params["site"], request.path_params["device"])
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return self.ref(Device, key)

    async def _bad(self, request: Request, exc: Exception) -> Response:
        return _json_error(400, str(exc))

    async def _unavailable(self, request: Request, exc: Exception) -> Response:
        return _json_error(503, f"try again: {exc}")

    async def _actor_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ActorError)
        if exc.remote_type in ("ValueError", "TypeError"):
            return _json_error(400, exc.remote_message)
        return _json_error(500, str(exc))

    async def sites(self) -> list[dict[str, Any]]:
        names = await retrying(lambda: self.fleet.sites())
        boards = await asyncio.gather(
            *(retrying(lambda s=s: self.ref(Site, s).dashboard()) for s in names))
        return list(boards)

    async def snapshot(self, ref: Any) -> dict[str, Any]:
        now = await retrying(lambda: ref.since(-1))
        history = await retrying(lambda: ref.history(240))
        cmds = await retrying(lambda: ref.commands(8))
        return {**now, "history": history, "commands": cmds}

    @staticmethod
    async def body(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise BadRequest("the body must be JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        return data

    # ------------------------------------------------------------ pages and API

    async def index(self, request: Request) -> Response:
        return HTMLResponse(index_page(await self.sites()))

    async def device(self, request: Request) -> Response:
        ref = self.device_ref(request)
        return HTMLResponse(device_page(await self.snapshot(ref)))

    async def api_sites(self, request: Request) -> Response:
        return JSONResponse(await self.sites())

    async def api_device(self, request: Request) -> Response:
        return JSONResponse(await self.snapshot(self.device_ref(request)))

    async def api_reading(self, request: Request) -> Response:
        ref = self.device_ref(request)
        data = await self.body(request)
        value, ts = data.get("value"), data.get("ts", time.time() * 1000)
        if not all(_is_number(x) for x in (value, ts)):
            raise BadRequest("a reading is {\"value\": number, \"ts\": number (ms, optional)}")
        await retrying(lambda: ref.record(ts, value))
        return JSONResponse({"ok": True}, status_code=202)

    async def api_readings(self, request: Request) -> Response:
        """Many readings in one request (a gateway's batch): all are checked before
        any is sent, so a bad one fails the request and nothing of it is recorded."""
        data = await self.body(request)
        rows = data.get("readings")
        if not isinstance(rows, list) or len(rows) > MAX_BATCH:
            raise BadRequest(f"{{\"readings\": [...]}} with at most {MAX_BATCH} readings")
        now = time.time() * 1000
        todo = []
        for i, row in enumerate(rows):
            try:
                key = device_key(row["site"], row["device"])
                value, ts = row["value"], row.get("ts", now)
                if not all(_is_number(x) for x in (value, ts)):
                    raise ValueError("value and ts must be numbers")
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise BadRequest(f"reading {i}: {exc!s} (site, device, value, ts?)") from None
            todo.append((self.ref(Device, key), ts, value))
        for ref, ts, value in todo:
            await retrying(lambda ref=ref, ts=ts, value=value: ref.record(ts, value))
        return JSONResponse({"ok": True, "readings": len(todo)}, status_code=202)

    async def api_command(self, request: Request) -> Response:
        ref = self.device_ref(request)
        data = await self.body(request)
        name = data.get("command")
        if not isinstance(name, str):
            raise BadRequest("{\"command\": name, \"arg\": value} expected")
        return JSONResponse(await retrying(lambda: ref.command(name, data.get("arg"))))

    # ------------------------------------------------------------ server-sent events

    async def events_sites(self, request: Request) -> Response:
        async def poll(cursor: Any) -> tuple[Any, Any]:
            boards = await self.sites()
            key = [(b["site"], b["version"], b["pid"]) for b in boards]
            return key, (None if key == cursor else {"sites": boards})

        feed = self.feeds.get("sites", poll, max(self.poll_period, 0.5))
        return self._stream(request, feed, first=None)

    async def events_device(self, request: Request) -> Response:
        ref = self.device_ref(request)
        name = ref.actor_id.key

        async def poll(cursor: Any) -> tuple[Any, Any]:
            seq, version = cursor or (-1, -1)
            out = await ref.since(seq, version)
            return (out["seq"], out["version"]), (out if "state" in out else None)

        try:  # the browser's last event id: what it has, after a reconnect
            after = int(request.headers.get("last-event-id") or request.query_params["after"])
        except (KeyError, ValueError):
            after = -1
        first = lambda: retrying(lambda: ref.since(after))  # noqa: E731
        return self._stream(request, self.feeds.get(name, poll, self.poll_period), first)

    def _stream(self, request: Request, feed: Any, first: Any) -> Response:
        async def events() -> AsyncIterator[str]:
            # subscribe first, then read the current state: no change falls between
            # (the page drops readings it already has, by seq)
            queue = feed.subscribe()
            try:
                if first is not None:
                    yield _sse(await first())
                while True:
                    try:
                        event = await asyncio.wait_for(queue.get(), KEEPALIVE)
                    except asyncio.TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if event is None:  # the feed dropped this slow stream
                        return
                    yield _sse(event)
            finally:
                feed.unsubscribe(queue)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    def close(self) -> None:
        self.feeds.close()


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _sse(event: dict[str, Any]) -> str:
    head = f"id: {event['seq']}\n" if "seq" in event and "sites" not in event else ""
    return f"{head}data: {json.dumps(event, separators=(',', ':'))}\n\n"


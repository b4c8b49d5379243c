"""The two HTML pages. They carry the actors' data as JSON and leave the drawing to
``static/app.js``; nothing here computes what the actors own."""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["device_page", "index_page"]


def _data(obj: Any) -> str:
    # inside <script type="application/json">: only "</" could end the element early
    return json.dumps(obj, separators=(",", ":")).replace("</", "<\\/")


def _page(title: str, body: str, boot: str, data: Any) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · DNA IoT</title>
<link rel="stylesheet" href="/static/style.css">
</head><body>
<header><a href="/" class="brand">DNA IoT</a><span class="tag">durable named actors demo</span>
<span id="live" class="live off" title="server-sent events">connecting</span></header>
<main>{body}</main>
<script id="data" type="application/json">{_data(data)}</script>
<script src="/static/app.js"></script>
<script>{boot}(JSON.parse(document.getElementById("data").textContent));</script>
</body></html>
"""


def index_page(sites: list[dict[str, Any]]) -> str:
    body = """<h1>Sites</h1>
<p class="muted">Each site is a <code>Site</code> actor aggregating its <code>Device</code>
actors; figures update live.</p>
<div id="sites"></div>"""
    return _page("Sites", body, "IoT.index", {"sites": sites})


def device_page(snap: dict[str, Any]) -> str:
    state = snap["state"]
    title = f"{state['site']}/{state['device']}"
    body = f"""<nav class="crumbs"><a href="/">Sites</a> / {html.escape(state['site'])} /
<span id="device-name">{html.escape(state['device'])}</span></nav>
<h1 id="label">{html.escape(state['label'])}</h1>
<p class="muted">Hosted by node <code id="node-id"></code> (pid <code id="node-pid"></code>)
&middot; readings stored: <b id="seq"></b></p>
<section class="stats">
  <div><span>last</span><b id="last">-</b></div>
  <div><span>min</span><b id="min">-</b></div>
  <div><span>max</span><b id="max">-</b></div>
  <div><span>avg</span><b id="avg">-</b></div>
  <div><span>window</span><b id="n">-</b></div>
  <div><span>offset</span><b id="offset">-</b></div>
  <div><span>threshold</span><b id="threshold">-</b></div>
</section>
<section class="chart-box"><svg id="chart" viewBox="0 0 800 260"
 role="img" aria-label="readings chart"></svg></section>
<section class="command">
<h2>Send a command</h2>
<form id="command-form">
  <select id="command" name="command">
    <option value="ping">ping</option>
    <option value="calibrate">calibrate (offset)</option>
    <option value="set_threshold">set_threshold (value, empty = none)</option>
    <option value="reset_window">reset_window</option>
    <option value="rename">rename (label)</option>
  </select>
  <input id="arg" name="arg" placeholder="argument" autocomplete="off">
  <button id="send" type="submit">Send</button>
</form>
<output id="command-result" class="result"></output>
<h3>Recent commands</h3>
<ol id="commands" class="commands"></ol>
</section>"""
    return _page(title, body, "IoT.device", snap)

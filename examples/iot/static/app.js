// The IoT example's pages: plain JavaScript, no libraries (the chart is drawn in SVG).
// Everything shown comes from the actors through the JSON API and server-sent events.
"use strict";
var IoT = (function () {
  var SVGNS = "http://www.w3.org/2000/svg";
  var MAX_POINTS = 240;
  var api = { latencies: [], updates: 0 };

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    return Math.abs(v) >= 1000 ? v.toFixed(1) : v.toFixed(2);
  }
  function live(ok, text) {
    var b = $("live");
    b.className = "live " + (ok ? "on" : "off");
    b.textContent = text;
  }
  function stream(url, onData) {
    var es = new EventSource(url);
    es.onopen = function () { live(true, "live"); };
    es.onerror = function () { live(false, "reconnecting"); };
    es.onmessage = function (m) { onData(JSON.parse(m.data)); };
    return es;
  }

  // ------------------------------------------------------------ sites page

  // Cards and rows are keyed by site and device and updated in place, so links stay put.
  function siteCard(box, s) {
    var card = box.querySelector("section.site[data-site='" + CSS.escape(s.site) + "']");
    if (card) return card;
    card = el("section", { "class": "site", "data-site": s.site });
    card.appendChild(el("h2", {}, s.site));
    card.appendChild(el("p", { "class": "muted summary" }));
    var t = el("table", { "class": "devices" });
    var head = el("tr");
    ["device", "label", "last", "avg", "readings", ""].forEach(function (c) {
      head.appendChild(el("th", {}, c));
    });
    t.appendChild(head);
    card.appendChild(t);
    box.appendChild(card);
    return card;
  }
  function deviceRow(table, site, d) {
    var tr = table.querySelector("tr[data-device='" + CSS.escape(d.device) + "']");
    if (tr) return tr;
    tr = el("tr", { "data-device": d.device });
    var a = el("a", { href: "/devices/" + encodeURIComponent(site) + "/" +
      encodeURIComponent(d.device), "class": "device-link" }, d.device);
    var td = el("td"); td.appendChild(a); tr.appendChild(td);
    for (var i = 0; i < 5; i++) tr.appendChild(el("td", { "class": i && i < 4 ? "num" : "" }));
    table.appendChild(tr);
    return tr;
  }
  function renderSites(sites) {
    var box = $("sites");
    var none = $("no-sites");
    if (!sites.length && !none) {
      box.appendChild(el("p", { "class": "muted", id: "no-sites" },
        "No sites yet: start the simulator, or POST a reading to /api/devices/SITE/DEVICE/readings."));
    } else if (sites.length && none) {
      none.remove();
    }
    sites.forEach(function (s) {
      var card = siteCard(box, s);
      card.querySelector(".summary").textContent = s.devices.length + " devices · " +
        s.readings + " readings · avg " + fmt(s.avg) + " · " + s.alarms + " alarms · node pid " +
        s.pid;
      var table = card.querySelector("table");
      s.devices.forEach(function (d) {
        var cells = deviceRow(table, s.site, d).children;
        cells[0].parentNode.className = d.alarm ? "alarm" : "";
        cells[1].textContent = d.label || d.device;
        cells[2].textContent = fmt(d.last);
        cells[3].textContent = fmt(d.avg);
        cells[4].textContent = String(d.seq || 0);
        cells[5].textContent = d.alarm ? "ALARM" : "";
      });
    });
  }

  api.index = function (data) {
    renderSites(data.sites);
    stream("/events/sites", function (ev) { renderSites(ev.sites); });
  };

  // ------------------------------------------------------------ device page

  function drawChart(points, threshold) {
    var c = $("chart");
    var W = 800, H = 260, L = 56, R = 10, T = 12, B = 26;
    c.textContent = "";
    if (!points.length) {
      var t = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", "class": "axis" });
      t.textContent = "waiting for readings";
      c.appendChild(t);
      return;
    }
    var lo = Infinity, hi = -Infinity;
    points.forEach(function (p) { lo = Math.min(lo, p[2]); hi = Math.max(hi, p[2]); });
    if (threshold !== null && threshold !== undefined) {
      lo = Math.min(lo, threshold); hi = Math.max(hi, threshold);
    }
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    var pad = (hi - lo) * 0.08; hi += pad; lo -= pad;
    var t0 = points[0][1], t1 = points[points.length - 1][1];
    if (t1 - t0 < 1) t1 = t0 + 1;
    function X(ts) { return L + (ts - t0) / (t1 - t0) * (W - L - R); }
    function Y(v) { return T + (hi - v) / (hi - lo) * (H - T - B); }
    for (var i = 0; i <= 4; i++) {
      var v = lo + (hi - lo) * i / 4, y = Y(v);
      c.appendChild(svg("line", { x1: L, x2: W - R, y1: y, y2: y, "class": "grid" }));
      var lab = svg("text", { x: L - 6, y: y + 4, "text-anchor": "end", "class": "axis" });
      lab.textContent = fmt(v);
      c.appendChild(lab);
    }
    var span = svg("text", { x: W - R, y: H - 6, "text-anchor": "end", "class": "axis" });
    span.textContent = "last " + ((t1 - t0) / 1000).toFixed(1) + " s";
    c.appendChild(span);
    if (threshold !== null && threshold !== undefined) {
      c.appendChild(svg("line", { x1: L, x2: W - R, y1: Y(threshold), y2: Y(threshold),
        "class": "threshold" }));
    }
    var d = points.map(function (p) { return X(p[1]).toFixed(1) + "," + Y(p[2]).toFixed(1); });
    c.appendChild(svg("polyline", { points: d.join(" "), "class": "line" }));
    var last = points[points.length - 1];
    c.appendChild(svg("circle", { cx: X(last[1]), cy: Y(last[2]), r: 4, "class": "dot" }));
  }

  function renderCommands(list) {
    var ol = $("commands");
    ol.textContent = "";
    list.forEach(function (c) {
      var arg = (c[2] === null || c[2] === undefined || c[2] === "") ? "" : " " + c[2];
      ol.appendChild(el("li", {}, new Date(c[0]).toLocaleTimeString() + "  " + c[1] + arg +
        " → " + c[3]));
    });
  }

  api.device = function (snap) {
    var state = snap.state, stats = snap.stats, points = [], lastSeq = 0, dirty = [];
    var commands = snap.commands || [];

    function merge(readings) {
      readings.forEach(function (r) {
        if (r[0] > lastSeq) { points.push(r); lastSeq = r[0]; dirty.push(r); }
      });
      if (points.length > MAX_POINTS) points.splice(0, points.length - MAX_POINTS);
    }
    function render() {
      var now = Date.now();
      dirty.forEach(function (r) { api.latencies.push(now - r[1]); });
      if (api.latencies.length > 100000) api.latencies.splice(0, 50000);
      dirty = [];
      $("label").textContent = state.label;
      $("node-id").textContent = state.node;
      $("node-pid").textContent = state.pid;
      $("seq").textContent = state.seq;
      $("last").textContent = fmt(stats.last);
      $("min").textContent = fmt(stats.min);
      $("max").textContent = fmt(stats.max);
      $("avg").textContent = fmt(stats.avg);
      $("n").textContent = stats.n;
      $("offset").textContent = fmt(state.offset);
      $("threshold").textContent = fmt(state.threshold);
      drawChart(points, state.threshold);
      api.updates += 1;
      document.body.setAttribute("data-seq", String(lastSeq));
    }
    var pending = false;
    function schedule() {
      if (pending) return;
      pending = true;
      requestAnimationFrame(function () { pending = false; render(); });
    }

    merge(snap.history || []);
    merge(snap.readings || []);
    dirty = [];  // what the page came with is not an update
    render();
    renderCommands(commands);

    var base = "/devices/" + encodeURIComponent(state.site) + "/" + encodeURIComponent(state.device);
    stream("/events" + base + "?after=" + lastSeq, function (ev) {
      if (ev.seq < lastSeq) {  // the device restarted from storage behind us: follow it
        points = points.filter(function (p) { return p[0] <= ev.seq; });
        lastSeq = ev.seq;
      }
      if (ev.state) state = ev.state;
      if (ev.stats) stats = ev.stats;
      merge(ev.readings || []);
      schedule();
    });

    $("command-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var out = $("command-result");
      out.className = "result pending";
      out.textContent = "sending…";
      fetch("/api" + base + "/command", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ command: $("command").value, arg: $("arg").value })
      }).then(function (r) {
        return r.json().then(function (body) { return { ok: r.ok, body: body }; });
      }).then(function (res) {
        if (res.ok) {
          out.className = "result ok";
          out.textContent = res.body.command + ": " + res.body.result;
          state = res.body.state;
          commands.unshift([Date.now(), res.body.command, $("arg").value, res.body.result]);
          renderCommands(commands.slice(0, 8));
          schedule();
        } else {
          out.className = "result error";
          out.textContent = "error: " + res.body.error;
        }
      }).catch(function (err) {
        out.className = "result error";
        out.textContent = "error: " + err;
      });
    });
  };

  return api;
})();

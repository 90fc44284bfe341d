"""The monitoring root page: links to every endpoint and a live dashboard.

A Python string, so a zipapp build carries it. One self-contained page: inline
CSS and JavaScript, no external downloads, readable on a phone. It polls
./varz and ./connz every second (relative URLs, so it works behind a proxy
path) and draws small SVG time series.

Stable hooks for browser tests: each chart is
`<figure class="chart" data-metric="NAME" data-last="VALUE">`, NAME one of
in_msgs_rate, out_msgs_rate, in_bytes_rate, out_bytes_rate, connections,
subscriptions, slow_consumers, routes; `data-last` holds the latest value
(a rate per second for the *_rate charts). The connection table is
`#conns` and its body `#conns-body`; `#status` says "live" once data flows.
"""

DASHBOARD_HTML = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gnatsd.py monitor</title>
<style>
:root {
  --bg: #f6f7f9; --card: #fff; --fg: #1c2330; --muted: #667085; --line: #e3e6eb;
  --accent: #2f6fdd; --accent2: #27a069; --warn: #d04437;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #12151b; --card: #1b2029; --fg: #e6e9ef; --muted: #98a2b3; --line: #2c3340;
          --accent: #6ea0ff; --accent2: #4cc38a; --warn: #ff6b5e; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 15px/1.4 ui-sans-serif, system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
header { padding: 14px 18px 6px; display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 18px; }
header h1 { font-size: 20px; margin: 0; }
header .meta { color: var(--muted); font-size: 13px; overflow-wrap: anywhere; }
#status { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: var(--line); }
#status.live { background: var(--accent2); color: #fff; }
#status.down { background: var(--warn); color: #fff; }
nav { padding: 0 18px 8px; display: flex; flex-wrap: wrap; gap: 6px 14px; }
nav a { color: var(--accent); text-decoration: none; font-weight: 600; }
nav a:hover { text-decoration: underline; }
nav a small { color: var(--muted); font-weight: 400; }
main { padding: 0 12px 24px; }
.facts { display: flex; flex-wrap: wrap; gap: 8px; padding: 0 6px 10px; }
.fact { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 6px 10px; }
.fact b { display: block; font-size: 16px; }
.fact span { color: var(--muted); font-size: 12px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 10px; padding: 0 6px; }
@media (max-width: 560px) {
  .grid { grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 8px; }
  .facts { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); }
  .fact span { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; display: block; }
}
figure.chart { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px 6px; }
figure.chart figcaption { display: flex; flex-wrap: wrap; justify-content: space-between; align-items: baseline; gap: 0 8px; }
figure.chart .label { color: var(--muted); font-size: 13px; }
figure.chart .value { font-size: 18px; font-weight: 600; font-variant-numeric: tabular-nums; }
figure.chart svg { display: block; width: 100%; height: 70px; }
figure.chart polyline { fill: none; stroke: var(--accent); stroke-width: 1.6; vector-effect: non-scaling-stroke; }
figure.chart polygon { fill: var(--accent); opacity: 0.12; }
figure.chart .max { color: var(--muted); font-size: 11px; text-align: right; }
h2 { font-size: 16px; margin: 18px 6px 8px; }
.tablewrap { overflow-x: auto; margin: 0 6px; background: var(--card); border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 8px; text-align: right; white-space: nowrap; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 600; cursor: pointer; user-select: none; }
th.sorted { color: var(--accent); }
td.l, th.l { text-align: left; }
tbody tr:last-child td { border-bottom: 0; }
.empty { color: var(--muted); text-align: center; padding: 12px; }
@media (max-width: 520px) {
  body { font-size: 14px; }
  .hide-s { display: none; }
  figure.chart svg { height: 48px; }
  figure.chart .value { font-size: 16px; }
}
</style>
</head>
<body>
<header>
  <h1>gnatsd.py</h1>
  <span id="status">connecting</span>
  <span class="meta" id="ident"></span>
</header>
<nav>
  <a href="./varz">General <small>/varz</small></a>
  <a href="./connz">Connections <small>/connz</small></a>
  <a href="./routez">Routes <small>/routez</small></a>
  <a href="./subsz">Subscriptions <small>/subsz</small></a>
  <a href="./healthz">Health Probe <small>/healthz</small></a>
  <a href="./metrics">Prometheus <small>/metrics</small></a>
</nav>
<main>
  <div class="facts">
    <div class="fact"><b id="f-uptime">-</b><span>uptime</span></div>
    <div class="fact"><b id="f-cpu">-</b><span>cpu</span></div>
    <div class="fact"><b id="f-mem">-</b><span>memory</span></div>
    <div class="fact"><b id="f-in">-</b><span>msgs in, total</span></div>
    <div class="fact"><b id="f-out">-</b><span>msgs out, total</span></div>
    <div class="fact"><b id="f-total">-</b><span>conns, total</span></div>
  </div>
  <div class="grid" id="charts"></div>
  <h2>Connections <small id="conns-count" style="color:var(--muted);font-weight:400"></small></h2>
  <div class="tablewrap">
    <table id="conns">
      <thead><tr id="conns-head"></tr></thead>
      <tbody id="conns-body"><tr><td class="empty" colspan="11">no connections</td></tr></tbody>
    </table>
  </div>
</main>
<script>
"use strict";
(function () {
  var POLL_MS = 1000, POINTS = 120, CONN_LIMIT = 100;
  var CHARTS = [
    ["in_msgs_rate", "messages in /s", "rate", "in_msgs"],
    ["out_msgs_rate", "messages out /s", "rate", "out_msgs"],
    ["in_bytes_rate", "bytes in /s", "bytes_rate", "in_bytes"],
    ["out_bytes_rate", "bytes out /s", "bytes_rate", "out_bytes"],
    ["connections", "connections", "level", "connections"],
    ["subscriptions", "subscriptions", "level", "subscriptions"],
    ["slow_consumers", "slow consumers", "level", "slow_consumers"],
    ["routes", "routes", "level", "routes"]
  ];
  // [header, connz sort key or "", cell(c), left-aligned, hide on phones]
  var COLUMNS = [
    ["cid", "cid", function (c) { return c.cid; }],
    ["name", "", function (c) { return c.name || ""; }, true],
    ["address", "", function (c) { return c.ip + ":" + c.port; }, true, true],
    ["lang", "", function (c) { return (c.lang || "") + (c.version ? " " + c.version : ""); }, true, true],
    ["uptime", "uptime", function (c) { return c.uptime; }],
    ["idle", "idle", function (c) { return c.idle; }, false, true],
    ["msgs in", "msgs_from", function (c) { return fmtNum(c.in_msgs); }],
    ["msgs out", "msgs_to", function (c) { return fmtNum(c.out_msgs); }],
    ["bytes in", "bytes_from", function (c) { return fmtBytes(c.in_bytes); }, false, true],
    ["bytes out", "bytes_to", function (c) { return fmtBytes(c.out_bytes); }, false, true],
    ["subs", "subs", function (c) { return c.subscriptions; }],
    ["pending", "pending", function (c) { return fmtBytes(c.pending_bytes); }, false, true],
    ["rtt", "", function (c) { return c.rtt || ""; }, false, true]
  ];
  var series = {}, charts = {}, prev = null, sortKey = "cid", busy = false;

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElementNS(tag === "svg" || tag === "polyline" || tag === "polygon"
      ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmtNum(n) {
    n = Number(n) || 0;
    var a = Math.abs(n);
    if (a >= 1e9) return (n / 1e9).toFixed(2) + "G";
    if (a >= 1e6) return (n / 1e6).toFixed(2) + "M";
    if (a >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return a % 1 ? n.toFixed(1) : String(n);
  }
  function fmtRate(n) {
    return n >= 100 ? fmtNum(Math.round(n)) : fmtNum(Math.round(n * 10) / 10);
  }
  function fmtBytes(n) {
    n = Number(n) || 0;
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(Math.round(n))) + " " + u[i];
  }
  // Go RFC 3339 times carry nanoseconds; Date.parse wants milliseconds.
  function parseTime(s) {
    var m = /^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$/.exec(s || "");
    if (!m) return Date.now();
    return Date.parse(m[1] + (m[2] ? m[2].slice(0, 4) : "") + m[3]);
  }

  function buildCharts() {
    var grid = $("charts");
    CHARTS.forEach(function (spec) {
      var fig = el("figure", {"class": "chart", "id": "chart-" + spec[0],
                              "data-metric": spec[0], "data-last": "0"});
      var cap = el("figcaption");
      cap.appendChild(el("span", {"class": "label"}, spec[1]));
      var val = el("span", {"class": "value"}, "-");
      cap.appendChild(val);
      fig.appendChild(cap);
      var svg = el("svg", {"viewBox": "0 0 " + (POINTS - 1) + " 100", "preserveAspectRatio": "none",
                           "role": "img", "aria-label": spec[1]});
      var area = el("polygon", {"points": ""});
      var line = el("polyline", {"points": ""});
      svg.appendChild(area);
      svg.appendChild(line);
      fig.appendChild(svg);
      var max = el("div", {"class": "max"}, "");
      fig.appendChild(max);
      grid.appendChild(fig);
      charts[spec[0]] = {fig: fig, val: val, line: line, area: area, max: max, kind: spec[2]};
      series[spec[0]] = [];
    });
  }

  function show(name, v) {
    var c = charts[name], s = series[name];
    s.push(v);
    if (s.length > POINTS) s.shift();
    var peak = Math.max.apply(null, s), top = Math.max(peak, 1);
    // Until the window is full the series is stretched over the width.
    var step = (POINTS - 1) / Math.max(s.length - 1, 1), pts = [];
    for (var i = 0; i < s.length; i++)
      pts.push((i * step).toFixed(2) + "," + (100 - 96 * s[i] / top).toFixed(2));
    c.line.setAttribute("points", pts.join(" "));
    c.area.setAttribute("points", pts.length > 1
      ? "0,100 " + pts.join(" ") + " " + (POINTS - 1) + ",100" : "");
    var fmt = c.kind === "bytes_rate" ? function (x) { return fmtBytes(x) + "/s"; }
      : c.kind === "rate" ? fmtRate : fmtNum;
    c.val.textContent = fmt(v);
    c.max.textContent = "max " + fmt(peak);
    c.fig.setAttribute("data-last", String(Math.round(v * 100) / 100));
  }

  function onVarz(v) {
    var t = parseTime(v.now);
    $("ident").textContent = (v.server_name || v.server_id) + " \u00b7 v" + v.version + " \u00b7 " +
      v.go + " \u00b7 " + v.host + ":" + v.port;
    $("f-uptime").textContent = v.uptime;
    $("f-cpu").textContent = v.cpu + "%";
    $("f-mem").textContent = fmtBytes(v.mem);
    $("f-in").textContent = fmtNum(v.in_msgs);
    $("f-out").textContent = fmtNum(v.out_msgs);
    $("f-total").textContent = fmtNum(v.total_connections);
    CHARTS.forEach(function (spec) {
      var name = spec[0], field = spec[3], value;
      if (spec[2] === "level") {
        value = Number(v[field]) || 0;
      } else {
        if (!prev) return;              // a rate needs two samples
        var dt = (t - prev.t) / 1000;
        if (dt <= 0) return;
        value = Math.max(0, (Number(v[field]) - Number(prev.v[field])) / dt);
      }
      show(name, value);
    });
    prev = {t: t, v: v};
  }

  function buildHead() {
    var tr = $("conns-head");
    tr.textContent = "";
    COLUMNS.forEach(function (col) {
      var cls = (col[3] ? "l " : "") + (col[4] ? "hide-s " : "") + (col[1] && col[1] === sortKey ? "sorted" : "");
      var th = el("th", {"class": cls, "title": col[1] ? "sort by " + col[1] : ""}, col[0]);
      if (col[1]) th.addEventListener("click", function () { sortKey = col[1]; buildHead(); poll(); });
      tr.appendChild(th);
    });
  }

  function onConnz(cz) {
    var body = $("conns-body");
    body.textContent = "";
    $("conns-count").textContent = cz.total > cz.num_connections
      ? "(" + cz.num_connections + " of " + cz.total + ")" : "(" + cz.total + ")";
    if (!cz.connections.length) {
      body.appendChild(el("tr")).appendChild(el("td", {"class": "empty", "colspan": COLUMNS.length}, "no connections"));
      return;
    }
    cz.connections.forEach(function (c) {
      var tr = el("tr", {"data-cid": c.cid});
      COLUMNS.forEach(function (col) {
        tr.appendChild(el("td", {"class": (col[3] ? "l " : "") + (col[4] ? "hide-s" : "")}, String(col[2](c))));
      });
      body.appendChild(tr);
    });
  }

  function getJSON(path) {
    var ctl = window.AbortController ? new AbortController() : null;
    var timer = ctl && setTimeout(function () { ctl.abort(); }, 3000);
    return fetch(path, {cache: "no-store", signal: ctl && ctl.signal}).then(function (r) {
      if (timer) clearTimeout(timer);
      if (!r.ok) throw new Error(path + ": HTTP " + r.status);
      return r.json();
    });
  }

  function setStatus(cls, text) {
    var s = $("status");
    s.className = cls;
    s.textContent = text;
  }

  function poll() {
    if (busy) return;
    busy = true;
    Promise.all([getJSON("./varz"), getJSON("./connz?limit=" + CONN_LIMIT + "&sort=" + sortKey)])
      .then(function (r) { onVarz(r[0]); onConnz(r[1]); setStatus("live", "live"); })
      .catch(function (e) { setStatus("down", "disconnected"); })
      .then(function () { busy = false; });
  }

  buildCharts();
  buildHead();
  poll();
  setInterval(poll, POLL_MS);
})();
</script>
</body>
</html>
"""

// correlator's page: copy the ID, open/close rows, subtrees and repeated-call groups, findings → spans.
// No data is read from the page into HTML: only `hidden`, classes and aria attributes change.
"use strict";

(function () {
  // ---- the waterfall: rows built from the embedded body, only those that are open ----
  var SVG = "http://www.w3.org/2000/svg", GROUP_MIN = 3, MAX_INDENT = 24;
  var TARGET_KEYS = ["http.route", "url.template", "url.path", "http.target", "server.address", "peer.service",
    "rpc.service", "rpc.method", "db.statement", "db.query.text", "messaging.destination.name"];
  var LITERALS = /'(?:[^']|'')*'|"[^"]*"|\b\d+(?:\.\d+)?\b/g;
  var W = null;

  function token(value) { return String(value).toLowerCase().replace(/[^a-z0-9_-]/g, "_").slice(0, 40); }

  // What makes two sibling calls "the same call": the body's own identity when it carries one.
  function target(span) {
    if (span.target !== undefined) return span.service + "\u0000" + span.operation + "\u0000" + str(span.target);
    var attrs = span.attributes || {};
    for (var i = 0; i < TARGET_KEYS.length; i++) {
      var key = TARGET_KEYS[i];
      if (attrs[key] !== undefined) {
        var value = str(attrs[key]);
        if (key.indexOf("db.") === 0) value = value.replace(LITERALS, "?");  // the same query, other values
        return span.service + "\u0000" + span.operation + "\u0000" + key + "\u0000" + value;
      }
    }
    return span.service + "\u0000" + span.operation;
  }

  function initWaterfall(wf) {
    var d = data(), spans = d.body.spans, n = spans.length, i;
    var w = { wf: wf, spans: spans, index: {}, parent: new Array(n), hasChildren: new Array(n), critical: {}, badges: {},
      groupOf: {}, groupSize: {}, groupOpen: {}, collapsed: new Array(n), nodes: new Array(n), groupNodes: {},
      scale: d.body.summary.duration_ms > 0 ? 100 / d.body.summary.duration_ms : 0 };
    for (i = 0; i < n; i++) w.index[spans[i].span_id] = i;
    var children = { root: [] };
    for (i = 0; i < n; i++) {
      var p = w.index[spans[i].parent_span_id];
      w.parent[i] = p === undefined ? -1 : p;
      if (p !== undefined) { w.hasChildren[p] = true; (children[p] = children[p] || []).push(i); } else children.root.push(i);
    }
    (d.body.critical_path || []).forEach(function (id) { w.critical[id] = true; });
    (d.body.findings || []).forEach(function (f) {
      (f.span_ids || []).forEach(function (id) { (w.badges[id] = w.badges[id] || []).push(String(f.kind)); });
    });
    // Runs of ≥ GROUP_MIN consecutive siblings calling the same target: one closed row each.
    Object.keys(children).forEach(function (key) {
      var list = children[key], start = 0;
      for (var k = 1; k <= list.length; k++) {
        if (k < list.length && target(spans[list[k]]) === target(spans[list[start]])) continue;
        if (k - start >= GROUP_MIN) {
          for (var m = start; m < k; m++) w.groupOf[list[m]] = list[start];
          w.groupSize[list[start]] = list.slice(start, k);
        }
        start = k;
      }
    });
    // A big trace opens as deep as fits in visible_rows; deeper subtrees start closed.
    var perDepth = [], openDepth = Infinity;
    if (n > d.visible_rows) {
      for (i = 0; i < n; i++) perDepth[spans[i].depth] = (perDepth[spans[i].depth] || 0) + 1;
      var shown = 0;
      openDepth = 1;  // the root's children always show, however many
      for (var depth = 0; depth < perDepth.length; depth++) {
        shown += perDepth[depth] || 0;
        if (shown > d.visible_rows) break;
        openDepth = Math.max(openDepth, depth);
      }
    }
    for (i = 0; i < n; i++) w.collapsed[i] = w.hasChildren[i] && spans[i].depth >= openDepth;
    if (openDepth !== Infinity) {
      var note = document.getElementById("wf-note");
      note.textContent = n + " spans: subtrees below depth " + openDepth + " start closed; open them with ▸";
      note.hidden = false;
    }
    W = w;
    draw();
  }

  function bar(startMs, durationMs, cls) {
    var svg = document.createElementNS(SVG, "svg"), rect = document.createElementNS(SVG, "rect");
    svg.setAttribute("class", "bar"); svg.setAttribute("aria-hidden", "true");
    rect.setAttribute("x", (startMs * W.scale).toFixed(2) + "%");
    rect.setAttribute("width", Math.max(0.15, durationMs * W.scale).toFixed(2) + "%");
    rect.setAttribute("height", "100%");
    rect.setAttribute("class", cls);
    svg.appendChild(rect);
    return svg;
  }

  function button(cls, text, expanded) {
    var b = el("button", cls, text);
    b.type = "button";
    if (expanded !== undefined) b.setAttribute("aria-expanded", expanded ? "true" : "false");
    return b;
  }

  function colour(service) { var c = DATA.colours[service]; return c === undefined ? 0 : c; }

  function rowNode(i) {
    if (W.nodes[i]) return W.nodes[i];
    var s = W.spans[i], id = s.span_id, error = s.status === "error", c = colour(s.service);
    var node = el("div", "sp" + (W.critical[id] ? " crit" : "") + (error ? " err" : ""));
    node.id = "s-" + id; node.dataset.i = String(i); node.dataset.d = String(s.depth);
    var row = el("div", "row"), name = el("div", "name d" + Math.min(s.depth, MAX_INDENT));
    if (W.hasChildren[i]) {
      var tw = button("tw", W.collapsed[i] ? "▸" : "▾", !W.collapsed[i]);
      tw.setAttribute("aria-label", "subtree");
      name.appendChild(tw);
    } else name.appendChild(el("span", "tw"));
    var op = button("op", null, false);
    op.appendChild(el("b", "svc c" + c, s.service));
    op.appendChild(document.createTextNode(" " + s.operation));
    name.appendChild(op);
    if (W.critical[id]) { var cp = el("span", "cp", "◆"); cp.title = "critical path"; name.appendChild(cp); }
    (W.badges[id] || []).forEach(function (kind) { name.appendChild(el("span", "bd k-" + token(kind), kind)); });
    if (error) name.appendChild(el("span", "em", s.status_message || "error"));
    var logs = (s.log_ids || []).length, inferred = (s.inferred_log_ids || []).length;
    var exemplars = (s.exemplar_ids || []).length, num = el("div", "num");
    num.appendChild(el("span", "lc" + (logs || inferred ? "" : " z"), logs + " logs" + (inferred ? " + " + inferred + " inferred" : "")));
    num.appendChild(el("span", "xc" + (exemplars ? "" : " z"), exemplars + " ex"));
    num.appendChild(el("span", "du", fmtMs(s.duration_ms)));
    num.appendChild(el("span", "self", "self " + fmtMs(s.self_ms || 0)));
    row.appendChild(name); row.appendChild(num); row.appendChild(bar(s.start_ms, s.duration_ms, "c" + c));
    node.appendChild(row);
    W.nodes[i] = node;
    return node;
  }

  function groupNode(first) {
    if (W.groupNodes[first]) return W.groupNodes[first];
    var members = W.groupSize[first], s = W.spans[first], c = colour(s.service), start = Infinity, end = -Infinity, sum = 0;
    members.forEach(function (m) {
      var span = W.spans[m];
      start = Math.min(start, span.start_ms); end = Math.max(end, span.start_ms + span.duration_ms); sum += span.duration_ms;
    });
    var node = el("div", "grp"), row = el("div", "row"), name = el("div", "name d" + Math.min(s.depth, MAX_INDENT));
    node.dataset.g = String(first); node.dataset.d = String(s.depth);
    name.appendChild(el("span", "tw"));
    var gt = button("gt", "▸ " + members.length + " × ", false);
    gt.appendChild(el("b", "svc c" + c, s.service));
    gt.appendChild(document.createTextNode(" " + s.operation));
    name.appendChild(gt);
    var num = el("div", "num");
    num.appendChild(el("span", "du", "Σ " + fmtMs(sum)));
    num.appendChild(el("span", "self", "over " + fmtMs(end - start)));
    row.appendChild(name); row.appendChild(num); row.appendChild(bar(start, end - start, "c" + c + " gb"));
    node.appendChild(row);
    W.groupNodes[first] = node;
    return node;
  }

  // The open rows in tree order: skip closed subtrees and the members of closed groups.
  function draw() {
    var frag = document.createDocumentFragment(), hideBelow = -1, spans = W.spans;
    for (var i = 0; i < spans.length; i++) {
      var depth = spans[i].depth;
      if (hideBelow >= 0 && depth > hideBelow) continue;
      hideBelow = -1;
      var g = W.groupOf[i];
      if (g === i) frag.appendChild(groupNode(g));
      if (g !== undefined && !W.groupOpen[g]) { hideBelow = depth; continue; }
      frag.appendChild(rowNode(i));
      if (W.collapsed[i]) hideBelow = depth;
    }
    W.wf.replaceChildren(frag);
  }

  function setCollapsed(i, closed) {
    W.collapsed[i] = closed;
    var tw = W.nodes[i] && W.nodes[i].querySelector(".tw");
    if (tw && tw.tagName === "BUTTON") { tw.setAttribute("aria-expanded", closed ? "false" : "true"); tw.textContent = closed ? "▸" : "▾"; }
  }

  function setGroupOpen(first, open) {
    W.groupOpen[first] = open;
    var gt = W.groupNodes[first] && W.groupNodes[first].querySelector(".gt");
    if (gt) {
      gt.setAttribute("aria-expanded", open ? "true" : "false");
      gt.firstChild.nodeValue = gt.firstChild.nodeValue.replace(open ? "▸" : "▾", open ? "▾" : "▸");
    }
  }

  // Open every ancestor subtree and group of span i.
  function reveal(i) {
    for (var k = i; k >= 0; k = W.parent[k]) {
      if (k !== i && W.collapsed[k]) setCollapsed(k, false);
      if (W.groupOf[k] !== undefined && !W.groupOpen[W.groupOf[k]]) { groupNode(W.groupOf[k]); setGroupOpen(W.groupOf[k], true); }
    }
  }

  // ---- a span's detail, built from the embedded body when its row is first opened ----
  // Only createElement/textContent: every value is data from a backend and stays text.
  var DATA = null, LOGS = null, EXEMPLARS = null;
  var LEVELS = { error: "error", err: "error", fatal: "error", critical: "error", crit: "error", emerg: "error",
    alert: "error", panic: "error", severe: "error", warn: "warn", warning: "warn", info: "info", information: "info",
    informational: "info", notice: "info", debug: "debug", trace: "debug", dbg: "debug", fine: "debug", verbose: "debug" };
  var MATCH = { span_id: "span_id", time: "service+time", trace: "trace level", inferred: "inferred" };
  var KNOWN = ["span_id", "parent_span_id", "service", "operation", "start_ms", "duration_ms", "self_ms", "depth", "kind",
    "status", "status_message", "attributes", "events", "log_ids", "exemplar_ids", "inferred_log_ids", "target"];
  var LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

  function data() {
    if (!DATA) {
      DATA = JSON.parse(document.getElementById("data").textContent);
      LOGS = {}; EXEMPLARS = {};
      DATA.body.logs.forEach(function (l, i) { LOGS[l.id] = [l, DATA.log_rel_ms[i]]; });
      DATA.body.exemplars.forEach(function (x, i) { EXEMPLARS[x.id] = [x, DATA.exemplar_rel_ms[i]]; });
    }
    return DATA;
  }

  function fmtMs(ms) {
    var a = Math.abs(ms);
    if (ms === 0) return "0 ms";
    if (a >= 1e6) return (ms / 1000).toFixed(0) + " s";
    if (a >= 1000) return String(Number((ms / 1000).toPrecision(3))) + " s";
    if (a >= 100) return ms.toFixed(0) + " ms";
    if (a >= 1) return String(Number(ms.toPrecision(3))) + " ms";
    return ms.toFixed(3) + " ms";
  }
  function rel(ms) { return (ms >= 0 ? "+" : "") + fmtMs(ms); }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function str(value) { return typeof value === "string" ? value : JSON.stringify(value); }

  function kvTable(obj) {
    var table = el("table", "kv");
    Object.keys(obj).forEach(function (k) {
      var tr = table.insertRow();
      tr.appendChild(el("th", null, k));
      tr.appendChild(el("td", null, str(obj[k])));
    });
    return table;
  }

  function link(href, text) {
    var a = el("a", null, text);
    a.href = href; a.target = "_blank"; a.rel = "noopener noreferrer";
    return a;
  }

  // Grafana Explore, the same pane state the server's links use; every data value is quoted.
  function explore(uid, type, expr, fromMs, toMs, extra) {
    var cfg = DATA.explore, query = { refId: "A", datasource: { type: type, uid: uid }, expr: expr };
    if (extra) query.exemplar = true;
    var pane = { datasource: uid, queries: [query], range: { from: String(Math.floor(fromMs) - 60000), to: String(Math.ceil(toMs) + 60000) } };
    return cfg.url + "/explore?schemaVersion=1&panes=" + encodeURIComponent(JSON.stringify({ a: pane }));
  }
  function logsLink(span) {
    var cfg = DATA.explore;
    if (!cfg || !span.service || !LABEL.test(cfg.service_label)) return null;
    var expr = "{" + cfg.service_label + "=" + JSON.stringify(span.service) + "} |= " + JSON.stringify(DATA.body.trace_id);
    var start = DATA.origin_ms + span.start_ms;
    return explore(cfg.loki_uid, "loki", expr, start, start + span.duration_ms);
  }
  function seriesLink(x, relMs) {
    var cfg = DATA.explore, matchers = [];
    if (!cfg || !LABEL.test(String(x.metric).replace(/:/g, "_"))) return null;
    var keys = Object.keys(x.series || {});
    for (var i = 0; i < keys.length; i++) {
      if (keys[i] === "__name__" || keys[i] === "le") continue;
      if (!LABEL.test(keys[i])) return null;
      matchers.push(keys[i] + "=" + JSON.stringify(String(x.series[keys[i]])));
    }
    var at = DATA.origin_ms + relMs;
    return explore(cfg.prometheus_uid, "prometheus", x.metric + "{" + matchers.join(",") + "}", at, at, true);
  }

  function logList(ids) {
    var ul = el("ul", "logs");
    ids.forEach(function (id) {
      var entry = LOGS[id];
      if (!entry) return;
      var l = entry[0], level = l.level ? String(l.level) : "";
      var li = el("li", "lv-" + (LEVELS[level.toLowerCase()] || "other"));
      li.appendChild(el("time", null, rel(entry[1])));
      li.appendChild(el("span", "lvl", level || "—"));
      var match = MATCH[l.match] || String(l.match);
      if (l.confidence) match += " (" + l.confidence + ")";
      var m = el("span", "m", match); m.title = "how the join placed this line";
      li.appendChild(m);
      li.appendChild(el("code", "line", l.line));
      ul.appendChild(li);
    });
    return ul;
  }

  function exemplarTable(ids) {
    var table = el("table", "ex"), head = table.createTHead().insertRow();
    ["time", "metric", "series", "bucket", "value", "placed by", ""].forEach(function (h) { head.appendChild(el("th", null, h)); });
    var tbody = table.createTBody();
    ids.forEach(function (id) {
      var entry = EXEMPLARS[id];
      if (!entry) return;
      var x = entry[0], tr = tbody.insertRow(), series = el("td");
      tr.insertCell().appendChild(el("time", null, rel(entry[1])));
      tr.insertCell().appendChild(el("code", null, x.metric));
      Object.keys(x.series || {}).forEach(function (k) {
        if (k === "__name__" || k === "le") return;
        var lab = el("span", "lab", k + "="); lab.appendChild(el("code", null, x.series[k]));
        series.appendChild(lab); series.appendChild(document.createTextNode(" "));
      });
      tr.appendChild(series);
      var bucket = tr.insertCell();
      if (x.series && x.series.le !== undefined) { bucket.textContent = "le "; bucket.appendChild(el("code", null, x.series.le)); }
      tr.insertCell().appendChild(el("span", "val", x.value));
      tr.insertCell().appendChild(el("span", "m", MATCH[x.match] || String(x.match)));
      var out = tr.insertCell(), href = seriesLink(x, entry[1]);
      if (href) out.appendChild(link(href, "series in Grafana"));
    });
    return table;
  }

  function buildDetail(row) {
    var d = data(), span = d.body.spans[+row.dataset.i];
    var box = el("div", "det");
    if (!span) return box;
    var meta = el("p", "meta");
    meta.appendChild(document.createTextNode("span "));
    meta.appendChild(el("code", null, span.span_id));
    meta.appendChild(document.createTextNode(" · " + span.kind + (span.target ? " → " + str(span.target) : "") +
      " · status " + span.status + " "));
    if (span.status_message) meta.appendChild(el("span", "em", span.status_message));
    meta.appendChild(document.createTextNode(" · starts " + rel(span.start_ms) + " · " + fmtMs(span.duration_ms) +
      " (self " + fmtMs(span.self_ms || 0) + ")"));
    var logsHref = (span.log_ids || []).length ? logsLink(span) : null;
    if (logsHref) { meta.appendChild(document.createTextNode(" · ")); meta.appendChild(link(logsHref, "logs in Grafana")); }
    if (d.jaeger) {
      meta.appendChild(document.createTextNode(" · "));
      meta.appendChild(link(d.jaeger + "/trace/" + encodeURIComponent(d.body.trace_id) + "?uiFind=" + encodeURIComponent(span.span_id), "in Jaeger"));
    }
    box.appendChild(meta);
    var attrs = span.attributes || {}, extra = {}, empty = true;
    Object.keys(span).forEach(function (k) { if (KNOWN.indexOf(k) < 0) extra[k] = span[k]; });
    if (Object.keys(attrs).length) { box.appendChild(el("h4", null, "Attributes")); box.appendChild(kvTable(attrs)); empty = false; }
    if (Object.keys(extra).length) { box.appendChild(el("h4", null, "More")); box.appendChild(kvTable(extra)); }
    var events = span.events || [];
    if (events.length) {
      empty = false;
      box.appendChild(el("h4", null, "Events"));
      var ul = el("ul", "events"), times = d.event_rel_ms[span.span_id] || [];
      events.forEach(function (e, j) {
        var li = el("li");
        li.appendChild(el("time", null, times[j] !== undefined ? rel(times[j]) : String(e.timestamp)));
        li.appendChild(document.createTextNode(" "));
        li.appendChild(el("b", null, e.name));
        Object.keys(e.attributes || {}).forEach(function (k) {
          li.appendChild(document.createTextNode(" "));
          var lab = el("span", "lab", k + "="); lab.appendChild(el("code", null, str(e.attributes[k]))); li.appendChild(lab);
        });
        Object.keys(e).forEach(function (k) {
          if (k === "name" || k === "timestamp" || k === "attributes") return;
          li.appendChild(document.createTextNode(" "));
          var lab = el("span", "lab", k + "="); lab.appendChild(el("code", null, str(e[k]))); li.appendChild(lab);
        });
        ul.appendChild(li);
      });
      box.appendChild(ul);
    }
    if ((span.log_ids || []).length) { empty = false; box.appendChild(el("h4", null, "Log lines")); box.appendChild(logList(span.log_ids)); }
    if ((span.inferred_log_ids || []).length) {  // lines that carry no trace ID, placed by service and time
      empty = false;
      box.appendChild(el("h4", null, "Log lines without a trace ID (inferred by time)"));
      box.appendChild(logList(span.inferred_log_ids));
    }
    if ((span.exemplar_ids || []).length) {
      empty = false; box.appendChild(el("h4", null, "Exemplars")); box.appendChild(exemplarTable(span.exemplar_ids));
    }
    if (empty) box.appendChild(el("p", "none", "No attributes, events, log lines or exemplars."));
    return box;
  }

  function toggleDetail(row, button) {
    var detail = row.querySelector(".det");
    if (!detail) { detail = buildDetail(row); detail.hidden = true; row.appendChild(detail); }
    var open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", open ? "true" : "false");
    detail.hidden = !open;
  }

  function onWaterfallClick(event) {
    var b = event.target.closest("button");
    if (!b || !W.wf.contains(b)) return;
    if (b.classList.contains("op")) {
      toggleDetail(b.closest(".sp"), b);
    } else if (b.classList.contains("tw")) {
      var i = +b.closest(".sp").dataset.i;
      setCollapsed(i, !W.collapsed[i]);
      draw();
    } else if (b.classList.contains("gt")) {
      var first = +b.closest(".grp").dataset.g;
      setGroupOpen(first, !W.groupOpen[first]);
      draw();
    }
  }

  function highlight(ids) {
    var previous = W.wf.querySelectorAll(".sp.hl");
    for (var k = 0; k < previous.length; k++) previous[k].classList.remove("hl");
    var found = ids.map(function (id) { return W.index[id]; }).filter(function (i) { return i !== undefined; });
    found.forEach(reveal);
    draw();
    found.forEach(function (i) { rowNode(i).classList.add("hl"); });
    if (found.length) {
      var first = rowNode(found[0]);
      first.scrollIntoView({ block: "center", behavior: "smooth" });
      first.querySelector(".op").focus({ preventScroll: true });
    }
  }

  function copy(button) {
    var text = button.dataset.copy, done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text); done(); });
    } else { fallbackCopy(text); done(); }
  }

  function fallbackCopy(text) {
    var range = document.createRange(), target = document.getElementById("tid");
    range.selectNodeContents(target);
    var selection = window.getSelection();
    selection.removeAllRanges(); selection.addRange(range);
    try { document.execCommand("copy"); } catch (e) { /* the ID stays selected for Ctrl+C */ }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var wf = document.getElementById("wf");
    if (wf) { initWaterfall(wf); wf.addEventListener("click", onWaterfallClick); }
    var copyButton = document.getElementById("copy");
    if (copyButton) copyButton.addEventListener("click", function () { copy(copyButton); });
    var findings = document.querySelectorAll(".fd");
    for (var i = 0; i < findings.length; i++) {
      findings[i].addEventListener("click", function (event) {
        var spans = (event.currentTarget.dataset.spans || "").split(" ").filter(Boolean);
        if (W) highlight(spans);
      });
    }
    document.documentElement.dataset.ready = "1";  // for tests and the bench: handlers are attached
  });
})();

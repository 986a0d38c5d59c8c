"""A big, varied, deterministic trace with its log lines and exemplars, as the backends' bytes.

For the byte-for-byte comparison of response bodies across implementations (tests/test_spans_identical.py):
every shape the span parse, the tree, the detectors and the render branch on — AnyValue kinds, kinds and
status codes as numbers and names, events out of order, links, base64 IDs, another trace's spans,
duplicates, orphans, negative durations, N+1 loops, pools, parallel and sequential calls, retries, 5xx.
Pure function of its arguments (one seeded `random.Random`), so any checkout produces the same bytes.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import orjson

__all__ = ["TRACE_ID", "bodies"]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
_OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"
_T0 = 1_764_590_400_000_000_000
_MS = 1_000_000
_SERVICES = ("api-gateway", "course-service", "pricing", "stock", "reviews", "media", "auth-service")
_STATEMENTS = ("SELECT * FROM lessons WHERE course_id = {n}", "SELECT name FROM users WHERE id IN ({n}, {m}, 7)",
               "INSERT INTO t (a, b) VALUES ('x{n}', {m}), ('y', 2)", "UPDATE stock SET n = n - 1 WHERE sku = \"{n}\"",
               "  select   1  ")


def _value(rng: random.Random, n: int) -> dict[str, Any]:
    pick = rng.randrange(9)
    if pick == 0:
        return {"intValue": str(n)}
    if pick == 1:
        return {"intValue": n}
    if pick == 2:
        return {"boolValue": n % 2 == 0}
    if pick == 3:
        return {"doubleValue": n / 7}
    if pick == 4:
        return {"bytesValue": base64.b64encode(n.to_bytes(4, "big")).decode()}
    if pick == 5:
        return {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": str(n)}]}}
    if pick == 6:
        return {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": f"v{n}"}}]}}
    if pick == 7:
        return {}
    return {"stringValue": f"value {n}"}


def _attributes(rng: random.Random, i: int, kind: int) -> list[dict[str, Any]]:
    attrs: list[dict[str, Any]] = []

    def put(key: str, value: dict[str, Any]) -> None:
        attrs.append({"key": key, "value": value})

    roll = rng.randrange(12)
    if roll == 0:
        put("db.statement", {"stringValue": rng.choice(_STATEMENTS).format(n=rng.randrange(50), m=i)})
    elif roll == 1:
        put("http.route", {"stringValue": f"/courses/{{id}}/part{i % 3}"})
    elif roll == 2:
        put("url.full", {"stringValue": f"http://pricing:8080/price/{i}?q=1"})
    elif roll == 3:
        put("rpc.method", {"stringValue": "Get"})
        put("rpc.service", {"stringValue": "stock.Stock"})
    elif roll == 4:
        put("peer.service", {"stringValue": "redis"})
    elif roll == 5:
        put("server.address", {"stringValue": "10.0.0.7"})
        put("url.path", {"stringValue": f"/users/{i}/items"})
    elif roll == 6:
        put("messaging.destination.name", {"stringValue": "orders"})
    if rng.random() < 0.05:
        put("http.response.status_code", {"intValue": str(rng.choice((200, 404, 500, 503)))})
    if rng.random() < 0.03:
        put("http.status_code", {"stringValue": rng.choice(("502", "oops", "200"))})
    if rng.random() < 0.02:
        put("error", rng.choice(({"boolValue": True}, {"stringValue": "True"}, {"stringValue": "false"})))
    for extra in range(rng.randrange(3)):
        put(f"x.attr{extra}", _value(rng, i))
    if kind == 3 and rng.random() < 0.1:
        put("net.peer.name", {"stringValue": "db-1"})
    return attrs


def _id(rng: random.Random, n: int) -> str:
    hex_id = f"{n:016x}"
    if rng.random() < 0.01:  # a proto3-JSON producer: base64
        return base64.b64encode(bytes.fromhex(hex_id)).decode()
    return hex_id.upper() if rng.random() < 0.01 else hex_id


def bodies(spans: int, lines: int, exemplars: int, seed: int = 14) -> tuple[bytes, bytes, bytes]:
    """(Jaeger v3 answer, Loki streams answer, Prometheus exemplars answer)."""
    rng = random.Random(seed)
    per_service: dict[str, list[dict[str, Any]]] = {}
    made: list[tuple[int, int, int]] = []  # (id, start, end) of spans made so far

    def add(n: int, parent: int | None, service: str, start: int, dur: int, name: str, kind: int | str) -> None:
        kind_no = kind if isinstance(kind, int) else 3
        span: dict[str, Any] = {"traceId": TRACE_ID, "spanId": _id(rng, n), "name": name, "kind": kind,
                                "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + dur),
                                "attributes": _attributes(rng, n, kind_no)}
        if parent is not None:
            span["parentSpanId"] = _id(rng, parent)
        roll = rng.random()
        if roll < 0.03:
            span["status"] = {"code": 2, "message": rng.choice(("boom", "An error occurred.", "deadline exceeded"))}
        elif roll < 0.05:
            span["status"] = {"code": "STATUS_CODE_ERROR"}
        elif roll < 0.1:
            span["status"] = {"code": 1}
        else:
            span["status"] = {}
        if rng.random() < 0.04:
            events = [{"name": "exception", "timeUnixNano": str(start + dur // 2),
                       "attributes": [{"key": "exception.message", "value": {"stringValue": f"timeout #{n}"}},
                                      {"key": "exception.type", "value": {"stringValue": "TimeoutError"}}]},
                      {"name": "retry", "timeUnixNano": str(start + dur // 3), "attributes": []},
                      {"name": "no time"}]
            span["events"] = events
        if rng.random() < 0.02:
            span["links"] = [{"traceId": _OTHER_TRACE, "spanId": f"{n + 7:016x}"}, {"traceId": "zz", "spanId": ""}]
        per_service.setdefault(service, []).append(span)
        made.append((n, start, start + dur))

    n = 1
    add(n, None, "api-gateway", _T0, 0, "GET /courses/42", 2)  # its end fixed below
    cursor = _T0 + _MS
    while n < spans:
        block = n
        service = rng.choice(_SERVICES)
        n += 1
        parent = n
        add(parent, block if rng.random() < 0.3 else 1, service, cursor, 60 * _MS, f"handle /items/{n}", 2)
        t = cursor + _MS
        shape = rng.randrange(4)
        count = rng.randrange(3, 14)
        for k in range(count):
            if n >= spans:
                break
            n += 1
            dur = rng.randrange(1, 4) * _MS + rng.randrange(1000)
            if shape == 0:  # N+1 loop: one after another
                add(n, parent, service, t, dur, "SELECT lessons", rng.choice((3, "SPAN_KIND_CLIENT")))
                t += dur + rng.randrange(0, 300_000)
            elif shape == 1:  # fan-out: all at once
                add(n, parent, service, t + rng.randrange(100_000), dur, f"GET {rng.choice(_SERVICES)}", 3)
            elif shape == 2:  # a pool of 2
                add(n, parent, service, t + (k // 2) * 3 * _MS, 3 * _MS - 1000, "GET pricing", 3)
            else:  # mixed work, sometimes sequential calls to different services
                add(n, parent, rng.choice(_SERVICES), t, dur * (5 if rng.random() < 0.1 else 1), f"op-{k % 5}",
                    rng.choice((0, 1, 4, 5, "SPAN_KIND_SERVER", "weird", 9)))
                t += dur
        cursor += rng.randrange(1, 30) * _MS
    # Oddities: a duplicate ID, an orphan, a negative duration, another trace's span, a self-parent, a bad ID.
    span_list = per_service["api-gateway"]
    span_list.append(dict(span_list[-1], name="duplicate"))
    span_list.append({"traceId": TRACE_ID, "spanId": "00000000000fffff", "parentSpanId": "0000000000eeeeee", "name": "orphan",
                      "startTimeUnixNano": str(_T0 + 5 * _MS), "endTimeUnixNano": str(_T0 + 9 * _MS)})
    span_list.append({"traceId": TRACE_ID, "spanId": "00000000000ffffe", "parentSpanId": "0000000000000001",
                      "name": "negative", "startTimeUnixNano": str(_T0 + 9 * _MS), "endTimeUnixNano": str(_T0 + 8 * _MS)})
    span_list.append({"traceId": _OTHER_TRACE, "spanId": "00000000000ffffd", "name": "other trace",
                      "startTimeUnixNano": str(_T0), "endTimeUnixNano": str(_T0 + _MS)})
    span_list.append({"traceId": TRACE_ID, "spanId": "00000000000ffffc", "parentSpanId": "00000000000ffffc",
                      "name": "own parent", "startTimeUnixNano": str(_T0), "endTimeUnixNano": str(_T0 + _MS)})
    span_list.append({"traceId": TRACE_ID, "spanId": "not an id", "name": "dropped"})
    span_list[0]["endTimeUnixNano"] = str(cursor + 100 * _MS)
    trace = orjson.dumps({"result": {"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
         "scopeSpans": [{"scope": {"name": "mix"}, "spans": items}]} for svc, items in per_service.items()]}})

    values = []
    for i in range(lines):
        sid, start, end = rng.choice(made)
        at = rng.randrange(start, max(start + 1, end))
        level = rng.choice(("info", "error", "warn", "debug"))
        text = f'level={level} msg="step {i}" trace_id={TRACE_ID}' + (f" span_id={sid:016x}" if rng.random() < 0.7 else "")
        values.append([str(at), text, {"structuredMetadata": {"detected_level": level}}])
    loki = orjson.dumps({"status": "success", "data": {"resultType": "streams", "encodingFlags": ["categorize-labels"],
                         "result": [{"stream": {"service_name": "course-service"}, "values": values}], "stats": {}}})

    found = []
    for _ in range(exemplars):
        sid, start, _end = rng.choice(made)
        labels = {"trace_id": TRACE_ID}
        if rng.random() < 0.8:
            labels["span_id"] = f"{sid:016x}"
        found.append({"labels": labels, "value": str(rng.choice((0.12, 3, "+Inf"))), "timestamp": (start + 1000) / 1e9})
    prom = orjson.dumps({"status": "success", "data": [{"seriesLabels": {"__name__": "http_server_duration_seconds_bucket",
                                                                         "service": "api-gateway", "le": "0.25"},
                                                        "exemplars": found}]})
    return trace, loki, prom

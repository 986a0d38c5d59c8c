r"""A fake Loki that answers like the real Loki 3 recorded in tests/fixtures/recorded/loki/.

Its data is the recorded scenario, rebuilt from the recordings (index labels `level` and
`service_name` — what `/loki/api/v1/labels` answered — everything else structured metadata)
plus two lines of another trace. It evaluates the LogQL subset a correlator sends — a
selector of `=`/`=~` matchers, `|= "…"` / `|= \`…\`` / `|~ "a|b"`, `| json`, and label filters joined
by `or` — honours start (inclusive), end (exclusive), limit, direction, the
`categorize-labels` flag (both answer shapes) and `X-Scope-OrgID`, and refuses what Loki
refuses with Loki's own text/plain messages. tests/test_fake_loki.py proves every recorded
request gets the recorded answer.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

REQUESTS: web.AppKey[list[web.Request]] = web.AppKey("requests", list)
RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "loki"
INDEX_LABELS = ("level", "service_name")
EMPTY_MATCHER = ('parse error : queries require at least one regexp or equality matcher that does not have an '
                 'empty-compatible value. For instance, app=~".*" does not meet this requirement, but app=~".+" will')


@dataclass(frozen=True)
class Entry:
    ts: int
    line: str
    labels: Mapping[str, str]  # index labels
    metadata: Mapping[str, str] = field(default_factory=dict)  # structured metadata


def recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / name).read_text())


def scenario() -> dict[str, Any]:
    return recorded("scenario.json")


def recorded_entries() -> list[Entry]:
    """Every line the recordings show, with index labels and structured metadata told apart."""
    entries: dict[tuple[int, str], Entry] = {}
    for name in ("query_range.line_filter_categorized.json", "query_range.structured_metadata_categorized.json"):
        for stream in recorded(name)["response"]["body"]["data"]["result"]:
            for ts, line, extra in stream["values"]:
                entries[(int(ts), line)] = Entry(int(ts), line, dict(stream["stream"]), dict(extra.get("structuredMetadata", {})))
    for stream in recorded("query_range.short_64bit_id.json")["response"]["body"]["data"]["result"]:
        labels = {k: v for k, v in stream["stream"].items() if k in INDEX_LABELS}
        metadata = {k: v for k, v in stream["stream"].items() if k not in INDEX_LABELS}
        for ts, line in stream["values"]:
            entries[(int(ts), line)] = Entry(int(ts), line, labels, metadata)
    other, t0 = scenario()["other_trace_id"], scenario()["t0_unix_nano"]
    # Noise: the same services, another trace (the recordings' stats count 10 lines, 8 of ours).
    entries[(t0 + 30_000_000, "noise-1")] = Entry(t0 + 30_000_000, f'level=info msg="GET /api/profile" trace_id={other}',
                                                 {"level": "info", "service_name": "api-gateway"}, {"detected_level": "info"})
    entries[(t0 + 31_000_000, "noise-2")] = Entry(t0 + 31_000_000, "token validated", {"service_name": "auth-service"},
                                                 {"detected_level": "info", "trace_id": other, "span_id": "1111111111111111"})
    return sorted(entries.values(), key=lambda e: e.ts)


# ------------------------------------------------------------------------------ LogQL subset


class ParseError(Exception):
    pass


_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*')


def _string(query: str, pos: int) -> tuple[str, int]:
    """A Go-quoted or backquoted literal starting at `pos` → (value, index after it)."""
    quote = query[pos]
    if quote == "`":
        end = query.find("`", pos + 1)
        if end < 0:
            raise ParseError(f"parse error at line 1, col {pos + 1}: literal not terminated")
        return query[pos + 1:end], end + 1
    if quote != '"':
        raise ParseError(f"parse error at line 1, col {pos + 1}: syntax error: unexpected {query[pos]!r}")
    i = pos + 1
    while i < len(query):
        if query[i] == "\\":
            i += 2
            continue
        if query[i] == '"':
            try:
                return json.loads(query[pos:i + 1]), i + 1
            except json.JSONDecodeError:
                raise ParseError(f"parse error at line 1, col {pos + 1}: invalid quoted string") from None
        if query[i] == "\n":
            break
        i += 1
    raise ParseError(f"parse error at line 1, col {pos + 1}: literal not terminated")


def _matches(op: str, value: str, actual: str | None) -> bool:
    actual = actual or ""
    if op == "=":
        return actual == value
    if op == "!=":
        return actual != value
    full = re.fullmatch(value, actual) is not None  # Loki anchors selector regexes
    return full if op == "=~" else not full


@dataclass
class Query:
    matchers: list[tuple[str, str, str]]
    stages: list[tuple[str, Any]]


def parse(query: str) -> Query:
    query = query.strip()
    if not query.startswith("{"):
        raise ParseError("parse error at line 1, col 1: syntax error: unexpected IDENTIFIER")
    pos, matchers = 1, []
    while True:
        m = _MATCHER.match(query, pos)
        if not m:
            raise ParseError(f"parse error at line 1, col {pos + 1}: syntax error: unexpected token")
        value, pos = _string(query, m.end())
        matchers.append((m.group(1), m.group(2), value))
        while pos < len(query) and query[pos] == " ":
            pos += 1
        if pos < len(query) and query[pos] == ",":
            pos += 1
            continue
        if pos < len(query) and query[pos] == "}":
            pos += 1
            break
        raise ParseError(f"parse error at line 1, col {pos + 1}: syntax error: unexpected token")
    if not any(not _matches(op, value, "") for _label, op, value in matchers if op in ("=", "=~")):
        raise ParseError(EMPTY_MATCHER)
    stages: list[tuple[str, Any]] = []
    while pos < len(query):
        if query[pos] == " ":
            pos += 1
        elif query.startswith(("|=", "!=", "|~", "!~"), pos):
            op = query[pos:pos + 2]
            pos += 2
            while pos < len(query) and query[pos] == " ":
                pos += 1
            if pos >= len(query):
                raise ParseError(f"parse error at line 1, col {pos + 1}: syntax error: unexpected $end")
            value, pos = _string(query, pos)
            stages.append(("line", (op, value)))
        elif query.startswith("| json", pos):
            stages.append(("json", None))
            pos += len("| json")
        elif query.startswith("|", pos):
            pos += 1
            alternatives = []
            while True:
                m = _MATCHER.match(query, pos)
                if not m:
                    raise ParseError(f"parse error at line 1, col {pos + 1}: syntax error: unexpected token")
                value, pos = _string(query, m.end())
                alternatives.append((m.group(1), m.group(2), value))
                rest = query[pos:].lstrip()
                if rest.startswith("or "):
                    pos = len(query) - len(rest) + 3
                    continue
                break
            stages.append(("labels", alternatives))
        else:
            raise ParseError(f"parse error at line 1, col {pos + 1}: syntax error: unexpected token")
    return Query(matchers, stages)


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}_{k}" if prefix else k, v, out)
    elif value is not None:
        out[prefix] = value if isinstance(value, str) else json.dumps(value)


def evaluate(q: Query, entry: Entry) -> dict[str, str] | None:
    """None if the entry is filtered out, else the labels the pipeline parsed."""
    if not all(_matches(op, value, entry.labels.get(label)) for label, op, value in q.matchers):
        return None
    parsed: dict[str, str] = {}
    for kind, arg in q.stages:
        if kind == "line":
            op, needle = arg
            # `|~` is unanchored RE2; the correlator sends only escaped literal alternations, where
            # Python's `re` agrees with RE2.
            found = needle in entry.line if op in ("|=", "!=") else re.search(needle, entry.line) is not None
            if found != (op in ("|=", "|~")):
                return None
        elif kind == "json":
            try:
                body = json.loads(entry.line)
                if not isinstance(body, dict):
                    raise ValueError
            except ValueError:
                parsed["__error__"] = "JSONParserErr"
                parsed["__error_details__"] = "Value looks like object, but can't find closing '}' symbol"
                continue
            flat: dict[str, str] = {}
            _flatten("", body, flat)
            for k, v in flat.items():
                parsed[f"{k}_extracted" if k in entry.labels else k] = v
        elif kind == "labels":
            seen = {**entry.labels, **entry.metadata, **parsed}
            if not any(_matches(op, value, seen.get(label)) for label, op, value in arg):
                return None
    return parsed


# ------------------------------------------------------------------------------ the server


@functools.lru_cache(maxsize=1)
def _stats_template() -> dict[str, Any]:
    return recorded("query_range.line_filter.json")["response"]["body"]["data"]["stats"]


def _stats(processed: int, returned: int) -> dict[str, Any]:
    """The recorded `stats` block (same keys as a real Loki 3), with this answer's counts."""
    stats = copy.deepcopy(_stats_template())
    stats["summary"].update(totalLinesProcessed=processed, totalEntriesReturned=returned,
                            totalPostFilterLines=returned, execTime=0.001, queueTime=0.0)
    return stats


def _text(status: int, body: str) -> web.Response:
    return web.Response(status=status, text=body, content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


MAX_ENTRIES = 5000  # max_entries_limit_per_query's default


def parse_timestamp(raw: str) -> int:
    """Loki's `parseTimestamp`: a `.` → float seconds; an integer of ≤ 10 digits → seconds;
    a longer integer → ns; else RFC 3339."""
    if "." in raw and not raw[:1].isalpha():
        try:
            return int(float(raw) * 1e9)
        except ValueError:
            pass
    if raw.lstrip("-").isdigit():
        return int(raw) * 1_000_000_000 if len(raw) <= 10 else int(raw)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f'cannot parse "{raw}" to a valid timestamp') from None
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def answer(entries: Sequence[Entry], params: Mapping[str, str], categorize: bool) -> web.Response:
    try:
        q = parse(params.get("query", ""))
    except ParseError as exc:
        return _text(400, str(exc))
    try:
        end = parse_timestamp(params["end"]) if "end" in params else time.time_ns()
        start = parse_timestamp(params["start"]) if "start" in params else end - 3600 * 1_000_000_000
        limit = int(params.get("limit", "100"))
    except ValueError as exc:
        return _text(400, str(exc))
    if limit <= 0:
        return _text(400, "limit must be a positive value")
    if limit > MAX_ENTRIES:
        return _text(400, "max entries limit per query exceeded, limit > max_entries_limit_per_query "
                          f"({limit} > {MAX_ENTRIES})")
    if end <= start:
        return _text(400, "end timestamp must not be before or equal to start time")
    backward = params.get("direction", "backward").lower() == "backward"
    hits = []
    scanned = 0
    for entry in entries:
        if not start <= entry.ts < end:
            continue
        scanned += 1
        parsed = evaluate(q, entry)
        if parsed is not None:
            hits.append((entry, parsed))
    hits.sort(key=lambda h: h[0].ts, reverse=backward)
    hits = hits[:limit]
    streams: dict[str, dict[str, Any]] = {}
    for entry, parsed in hits:
        if categorize:
            labels = dict(entry.labels)
            extra: dict[str, Any] = {}
            if entry.metadata:
                extra["structuredMetadata"] = dict(entry.metadata)
            if parsed:
                extra["parsed"] = dict(parsed)
            value: list[Any] = [str(entry.ts), entry.line, extra]
        else:
            labels = {**entry.labels, **entry.metadata, **parsed}
            value = [str(entry.ts), entry.line]
        key = json.dumps(labels, sort_keys=True)
        streams.setdefault(key, {"stream": dict(sorted(labels.items())), "values": []})["values"].append(value)
    data: dict[str, Any] = {"resultType": "streams"}
    if categorize:
        data["encodingFlags"] = ["categorize-labels"]
    data["result"] = list(streams.values())
    data["stats"] = _stats(scanned, len(hits))
    return web.json_response({"status": "success", "data": data}, content_type="application/json")


def make_fake_loki_app(tenants: Mapping[str, Sequence[Entry]] | None = None, latency_s: float = 0.0,
                       shift_ns: int = 0, extra: Sequence[Entry] = ()) -> web.Application:
    """`tenants`: X-Scope-OrgID → data; when given, requests without a tenant get 401 `no org id`.
    `shift_ns` moves the recorded scenario in time (to meet a trace sent to a real Jaeger now);
    `extra` entries are stored beside it (lines of other traces, in the recorded lines' shape)."""
    default = sorted([Entry(e.ts + shift_ns, e.line, e.labels, e.metadata) for e in recorded_entries()] + list(extra),
                     key=lambda e: e.ts)
    app = web.Application()
    app[REQUESTS] = []

    async def query_range(request: web.Request) -> web.Response:
        app[REQUESTS].append(request)
        if latency_s:
            await asyncio.sleep(latency_s)
        if tenants is not None:
            tenant = request.headers.get("X-Scope-OrgID")
            if not tenant:
                return _text(401, "no org id")
            # Loki's multi-tenant read: `a|b` reads both tenants.
            entries: Sequence[Entry] = sorted((e for t in tenant.split("|") for e in tenants.get(t, ())),
                                              key=lambda e: e.ts)
        else:
            entries = default
        flags = {f.strip() for f in request.headers.get("X-Loki-Response-Encoding-Flags", "").split(",")}
        return answer(entries, request.query, "categorize-labels" in flags)

    async def ready(_request: web.Request) -> web.Response:
        return _text(200, "ready\n")

    async def labels(_request: web.Request) -> web.Response:
        return web.json_response(recorded("loki_api_v1_labels.json")["response"]["body"])

    async def service_names(_request: web.Request) -> web.Response:
        return web.json_response(recorded("loki_api_v1_label_service_name_values.json")["response"]["body"])

    app.router.add_get("/loki/api/v1/query_range", query_range)
    app.router.add_get("/ready", ready)
    app.router.add_get("/loki/api/v1/labels", labels)
    app.router.add_get("/loki/api/v1/label/service_name/values", service_names)
    return app

"""What a span does: service, name and target — the one identity every grouping detector uses.

Two `HTTP GET` client spans are the same operation only when they call the same thing:
the same route or path, the same peer, the same RPC method, the same statement shape or
the same message destination. Long spans, N+1, fan-out and the text tree's collapsing all
compare spans through `operation_key`, so they can never disagree about what is "similar".
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlsplit

from correlator.model import Span
from correlator.sources import _native

__all__ = ["NATIVE_FUNCTIONS", "OperationKey", "OperationKeys", "label", "native_function", "normalise_path",
           "normalise_statement", "operation_key", "operation_label", "operation_name", "path_shape", "statement_shape",
           "target", "target_python"]

OperationKey = tuple[str, str, str]  # (service, name with IDs stripped, target or "")

_STRING = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"")
# A number not glued to a word: `(?<![\w$])(?:0x[0-9a-fA-F]+|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?!\w)`, written so
# each branch starts with its first character and looks behind it from there — the same matches, but the
# engine can skip to candidate characters instead of testing the lookbehind at every position (2.0 → 0.9 µs
# for a short statement; tests/test_analysis_rules.py compares the two on random text).
_NUMBER = re.compile(r"(?:0(?<![\w$]0)x[0-9a-fA-F]+|-(?<![\w$]-)\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
                     r"|\d(?<![\w$]\d)\d*(?:\.\d+)?(?:[eE][-+]?\d+)?)(?!\w)")
_IN_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)")
_VALUES_ROWS = re.compile(r"\(\?\)(?:\s*,\s*\(\?\))+")  # VALUES (?), (?), … once the rows are collapsed
# Path segments that are IDs: numbers, UUIDs, long hex. `/users/42` and `/users/43` are one call.
_ID_SEGMENT = re.compile(r"(?<=/)(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}|[0-9a-fA-F]{16,})(?=/|$|\?|\s)")

_STATEMENT_KEYS = ("db.query.text", "db.statement")
_ROUTE_KEYS = ("http.route", "url.template")
_PATH_KEYS = ("url.path", "http.target")
_URL_KEYS = ("url.full", "http.url")
_DESTINATION_KEYS = ("messaging.destination.name", "messaging.destination")
_PEER_KEYS = ("server.address", "net.peer.name")
_WHAT_ORDER = ("rpc.method", *_STATEMENT_KEYS, *_DESTINATION_KEYS, *_ROUTE_KEYS, *_PATH_KEYS, *_URL_KEYS)
_WHAT_KEYS = frozenset(_WHAT_ORDER)
_TARGET_KEYS = frozenset((*_WHAT_ORDER, "peer.service", *_PEER_KEYS))
_RANK = {key: rank for rank, key in enumerate((*_WHAT_ORDER, "peer.service", *_PEER_KEYS))}
_LABEL_TARGET_MAX = 60

# What native/src/render_spans.rs adds to the extension. An older build without them leaves the shapes, targets and
# the spans' render to Python; CORRELATOR_REQUIRE_NATIVE=1 (CI) makes that an ImportError, as for the other loops.
NATIVE_FUNCTIONS = ("normalise_statement", "normalise_path", "span_target", "render_spans", "render_spans_json")
if os.environ.get("CORRELATOR_REQUIRE_NATIVE") == "1" and not all(hasattr(_native.MODULE, f) for f in NATIVE_FUNCTIONS):
    raise ImportError("CORRELATOR_REQUIRE_NATIVE=1 but the extension lacks the spans' render (pip install ./native)")


def native_function(name: str) -> Any | None:
    """The extension's function `name`, or None (no extension, switched off, or an older build): Python's way then."""
    return getattr(_native.MODULE, name, None)


# Names repeat thousands of times in a big trace; the regexes run once per distinct string.
_path_cache: dict[str, str] = {}
_statement_cache: dict[str, str] = {}
_CACHE_MAX = 50_000


def normalise_statement(statement: str) -> str:
    """Literals stripped so `WHERE id = 7` and `WHERE id = 8` are one query shape."""
    shape = _statement_cache.get(statement)
    if shape is None:
        native = native_function("normalise_statement")  # one byte scan for ASCII text, else None
        shape = native(statement) if native is not None else None
        if shape is None:
            shape = statement_shape(statement)
        if len(_statement_cache) < _CACHE_MAX:
            _statement_cache[statement] = shape
    return shape


def statement_shape(statement: str) -> str:
    """`normalise_statement` by the regexes, uncached: the reference the native scan is held to."""
    # Each pattern only where its first character stands (100k distinct statements: render and
    # analysis each shape every one); `split`/`join` is `\s+` → " " then `strip`: one notion of space.
    shape = _STRING.sub("?", statement) if "'" in statement or '"' in statement else statement
    shape = _NUMBER.sub("?", shape)
    if "(" in shape:
        shape = _IN_LIST.sub("(?)", shape)
        shape = _VALUES_ROWS.sub("(?)", shape)
    return " ".join(shape.split())


def normalise_path(text: str) -> str:
    """IDs in URL paths (and span names built from them) replaced by `{id}`; the query string dropped."""
    out = _path_cache.get(text)
    if out is None:
        native = native_function("normalise_path")
        out = native(text) if native is not None else None
        if out is None:
            out = path_shape(text)
        if len(_path_cache) < _CACHE_MAX:
            _path_cache[text] = out
    return out


def path_shape(text: str) -> str:
    """`normalise_path` by the regex, uncached: the reference the native scan is held to."""
    return _ID_SEGMENT.sub("{id}", text.split("?", 1)[0]) if "/" in text else text


def _text(attrs: Mapping[str, object], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _url_path(url: str) -> str:
    try:
        path = urlsplit(url).path
    except ValueError:  # a malformed URL is still a target, just not a parsed one
        return normalise_path(url)
    return normalise_path(path or "/")


def _what(key: str, value: str, attrs: Mapping[str, object]) -> str:
    """The called thing itself, from the most telling attribute present."""
    if key == "rpc.method":
        service = attrs.get("rpc.service")
        return f"{service}/{value}" if isinstance(service, str) and service else value
    if key in _STATEMENT_KEYS:
        return normalise_statement(value)
    if key in _PATH_KEYS:
        return normalise_path(value)
    if key in _URL_KEYS:
        return _url_path(value)
    return value  # a route or a destination: already a template


def target(span: Span) -> str | None:
    """What the span calls or serves: `route /route`, `/customer`, `SELECT … WHERE id = ?`, or None."""
    native = native_function("span_target")
    if native is not None:
        # Natively for plain attributes (no URL, ASCII statements and paths); NotImplemented: Python's to say.
        found: object = native(span.attributes, span.kind)
        if found is not NotImplemented:
            return cast("str | None", found)
    return target_python(span)


def target_python(span: Span) -> str | None:
    """`target` in Python: the reference, and what the native code hands back."""
    attrs = span.attributes
    if not attrs or _TARGET_KEYS.isdisjoint(attrs):  # most spans: one C-level pass, nothing found
        return None
    present = _TARGET_KEYS.intersection(attrs)
    what = None
    # RPC method, statement, destination, route, path, URL: the first one present with a value.
    for key in sorted(present, key=_RANK.__getitem__) if len(present) > 1 else present:
        if key in _WHAT_KEYS:
            value = attrs[key]
            if isinstance(value, str) and value:
                what = _what(key, value, attrs)
                break
    peer = attrs.get("peer.service") if "peer.service" in present else None
    if not (isinstance(peer, str) and peer) and what is None and span.kind in ("client", "producer"):
        # A host or IP names the callee only when nothing better does.
        peer = _text(attrs, _PEER_KEYS)
    if isinstance(peer, str) and peer:
        return f"{peer} {what}" if what else peer
    return what


def operation_key(span: Span) -> OperationKey:
    """Spans with equal keys do the same thing: comparable durations, one loop, one collapsed line."""
    return span.service, operation_name(span), target(span) or ""


def operation_name(span: Span) -> str:
    name = span.operation
    return normalise_path(name) if "/" in name else name


class OperationKeys(dict[str, OperationKey]):
    """span id → operation key, computed on first use: most detectors look at few spans' targets.

    `targets`, when given, collects each target worked out (the tree's: the render reuses them).
    """

    __slots__ = ("_by_id", "_targets")

    def __init__(self, by_id: Mapping[str, Span], targets: dict[str, str | None] | None = None) -> None:
        super().__init__()
        self._by_id = by_id
        self._targets = targets if targets is not None else {}

    def __missing__(self, sid: str) -> OperationKey:
        span = self._by_id[sid]
        what = self._targets[sid] = target(span)
        key = self[sid] = (span.service, operation_name(span), what or "")
        return key


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def operation_label(span: Span) -> str:
    """`HTTP GET → /customer`; the arrow is left out when the name already says it."""
    what = target(span)
    if not what or what in span.operation:
        return span.operation
    return f"{span.operation} → {_shorten(what, _LABEL_TARGET_MAX)}"


def label(span: Span) -> str:
    """`frontend: HTTP GET → /customer`."""
    return f"{span.service}: {operation_label(span)}"


def known_label(span: Span, targets: dict[str, str | None]) -> str:
    """`label(span)` for a span of the tree these `targets` are of (`SpanTree.targets`, keyed by span ID as its `by_id`):
    the target worked out once and kept there, where the render reads it instead of working it out again."""
    sid = span.span_id
    what = targets[sid] if sid in targets else targets.setdefault(sid, target(span))
    if not what or what in span.operation:
        return f"{span.service}: {span.operation}"
    return f"{span.service}: {span.operation} → {_shorten(what, _LABEL_TARGET_MAX)}"

"""Loki: two lookups for one trace ID, run concurrently, merged and de-duplicated.

A trace ID lives in one of two places (reference/backend-apis.md §2, recorded/loki/): in the
line body (text, JSON, logfmt — only `|= "ID"` finds it) or in structured metadata
(OTLP-ingested logs — only `| trace_id="ID"` finds it). We ask both at once over a stream
selector built from the trace's services, with `categorize-labels` so structured metadata
stays apart from index labels; an older Loki that ignores the flag answers in the folded
shape, which is handled too. The line filter uses the shortest spelling of the ID (a
substring of every other spelling) and each hit is then verified client-side.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import operator
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

import httpx
import msgspec
import orjson

from correlator import idformats
from correlator.config import LokiSettings
from correlator.errors import InvalidTraceId, SourceError, SourceHTTPError, SourceProtocolError
from correlator.gcpause import without_gc
from correlator.ids import TraceId, parse_trace_id
from correlator.logfields import (
    extract_trace_context,
    line_carries,
    lower64_carried,
    metadata_span_and_level,
    span_and_level_finder,
)
from correlator.logql import (
    line_filter_any_query,
    line_filter_query,
    metadata_any_query,
    metadata_query,
    stream_selector,
    untraced_query,
)
from correlator.model import LogLine, Window
from correlator.sources import SourceResult, _lazyjson, _native
from correlator.sources._http import get, not_json
from correlator.timeparams import rfc3339_ns
from correlator.untraced_share import LinesAnswer

__all__ = ["LokiSource", "carries_trace", "merge_duplicate", "parse_streams", "parse_streams_body"]

SOURCE = "loki"
PATH = "/loki/api/v1/query_range"
_blake2b = hashlib.blake2b
_ENCODING_FLAGS = {"X-Loki-Response-Encoding-Flags": "categorize-labels"}
_LOOKUPS = ("line-filter", "structured-metadata", "datadog-decimal")
_MANY_LOOKUPS = ("line-filter", "structured-metadata")  # fetch_many: IDs from exemplars, no decimal form
_LOKI_MAX_ENTRIES = 5000  # Loki's default max_entries_limit_per_query


def _line_id(joined: str) -> str:
    """A line's ID from f"{timestamp_ns}|{service}|{line}" (the parse writes the service part once per stream).

    Only what both answer shapes agree on: the folded shape mixes metadata into the labels.
    """
    return "log-" + _blake2b(joined.encode(), digest_size=8).hexdigest()


@functools.lru_cache(maxsize=1024)
def _services_selector(label: str, services: tuple[str, ...]) -> str:
    """`stream_selector`, written once per set of services (a route's traces ask with the same few: ~20 µs each)."""
    return stream_selector(label, services)


def _ns_param(ns: int) -> str:
    # Loki reads an integer of ≤ 10 digits as seconds: always send 19 digits (zero-padded).
    return f"{max(ns, 0):019d}"


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _strings(mapping: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in mapping.items()} if isinstance(mapping, dict) else {}


@without_gc
def parse_streams(body: Any, settings: LokiSettings) -> tuple[list[LogLine], int]:
    """A parsed query_range `streams` answer (either shape) → LogLines, and the number of entries.

    Raises ValueError/TypeError/IndexError when the body is not such an answer.
    """
    if not isinstance(body, dict) or body.get("status") != "success":
        raise ValueError("not a success envelope")
    data = body.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("result"), list):
        raise ValueError("no data.result list")
    if data.get("resultType", "streams") != "streams":
        raise ValueError(f"resultType {data.get('resultType')!r}, expected streams")
    categorized = "categorize-labels" in (data.get("encodingFlags") or ())
    return _lines(((stream.get("stream"), stream.get("values") or ()) for stream in data["result"]), categorized, settings)


class _Stream(msgspec.Struct):
    stream: msgspec.Raw = msgspec.Raw(b"null")
    values: list[msgspec.Raw] | None = None


class _Data(msgspec.Struct):
    result: list[_Stream]
    resultType: str = "streams"
    encodingFlags: list[str] | None = None


class _Answer(msgspec.Struct):
    status: str | None = None
    data: _Data | None = None


@without_gc
def parse_streams_body(raw: bytes | bytearray, settings: LokiSettings, memo: Any = None) -> tuple[list[LogLine], int]:
    """`parse_streams` from the answer's bytes, one entry decoded at a time (`_lazyjson`).

    Natively (`_native`) when the extension is installed and takes the answer, else in Python:
    the same LogLines either way (tests/test_native.py). Raises NotJson, and what `parse_streams` raises.
    `memo` (`_new_memo`): entries the same settings read before (a `fetch`'s other lookups), reused as they were read.
    """
    if _native.MODULE is not None:
        parsed = _native_lines(raw, settings, memo)
        if parsed is not None:
            return parsed
    return _python_lines(raw, settings)


def _python_lines(raw: bytes | bytearray, settings: LokiSettings) -> tuple[list[LogLine], int]:
    """The reference parse (and the fallback of the native one)."""
    answer = _lazyjson.envelope(raw, _Answer)
    if answer is None or answer.status != "success" or answer.data is None or answer.data.resultType != "streams":
        return parse_streams(_lazyjson.whole(raw), settings)  # says what is wrong, as it always did
    categorized = "categorize-labels" in (answer.data.encodingFlags or ())
    streams = ((_lazyjson.item(s.stream), map(_entry, s.values or ())) for s in answer.data.result)
    return _lines(streams, categorized, settings)


class _Entry(msgspec.Struct, array_like=True, gc=False):
    """The shape nearly every entry has: [ns as a string, line, metadata?], the metadata left as its bytes."""

    timestamp: str
    line: str
    metadata: msgspec.Raw = msgspec.Raw()  # empty when the entry has none


_ENTRY = msgspec.json.Decoder(_Entry)


def _entry(raw: msgspec.Raw) -> Any:
    """One undecoded entry → an `_Entry` (no list), else as orjson parses it.

    Anything msgspec does not take as an `_Entry` (a number for the time, invalid JSON) goes the
    general way, which reads or rejects it as it always did.
    """
    try:
        return _ENTRY.decode(memoryview(raw))
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _lazyjson.item(raw)


def _metadata(entry_metadata: Any, same: _Sharing) -> Mapping[str, str] | None:
    """An entry's third element (as orjson parses it) → its metadata; None when it is not an object."""
    if not isinstance(entry_metadata, dict):
        return None
    found: dict[str, str] = {}
    for group in ("structuredMetadata", "parsed"):
        found.update({k: v for k, v in _strings(entry_metadata.get(group)).items() if not k.startswith("__error")})
    return same.mapping(found)


def _lines(streams: Iterable[tuple[Any, Iterable[Any]]], categorized: bool,
           settings: LokiSettings) -> tuple[list[LogLine], int]:
    """(stream labels, entries) pairs → LogLines, and the number of entries.

    An entry is a decoded JSON array, or an `_Entry` (`parse_streams_body`): the same values.
    """
    lines: list[LogLine] = []
    append = lines.append
    entries = 0
    # Lines of one trace repeat their levels, span IDs and often their whole metadata: keep one
    # copy of each (500k lines: 256 → ~150 MB of LogLines, bench P5).
    same = _Sharing()
    shared_text = same.text
    # The same metadata bytes are the same metadata: decoded once per answer (bounded as `same`).
    by_bytes: dict[bytes, Mapping[str, str] | None] = {}
    span_and_level = span_and_level_finder(settings)
    for stream_labels, values in streams:
        labels = _strings(stream_labels)
        service = labels.get(settings.service_label)
        prefix = f"|{service}|"
        label_level = next((labels[f].lower() for f in settings.level_fields if labels.get(f)), None)
        # Folded shape: metadata hides among the labels and cannot be told apart.
        folded = None if categorized else same.mapping({k: v for k, v in labels.items() if not k.startswith("__error")})
        for value in values:
            entries += 1
            if type(value) is _Entry:
                ts, text = int(value.timestamp), value.line
                found = None
                if value.metadata:
                    key = bytes(value.metadata)
                    if key in by_bytes:
                        found = by_bytes[key]
                    else:
                        found = _metadata(_lazyjson.item(value.metadata), same)
                        if len(by_bytes) < _Sharing.LIMIT:
                            by_bytes[key] = found
            else:
                ts, text = int(value[0]), str(value[1])
                found = _metadata(value[2], same) if len(value) > 2 else None
            metadata = found if found is not None else folded if folded is not None else _NO_METADATA
            span_id, level = span_and_level(text, metadata)
            # Positional (id, timestamp_ns, line, service, level, labels, metadata, span_id): a fifth cheaper.
            append(LogLine(_line_id(f"{ts}{prefix}{text}"), ts, text, service, shared_text(level or label_level), labels, metadata,
                           shared_text(span_id)))
    return lines, entries


_NO_METADATA: Mapping[str, str] = MappingProxyType({})


class _WholeStream(msgspec.Struct):
    """A stream with its entries left as one undecoded array: the native code reads it in one pass."""

    stream: msgspec.Raw = msgspec.Raw(b"null")
    values: msgspec.Raw = msgspec.Raw(b"null")


class _WholeData(msgspec.Struct):
    result: list[_WholeStream]
    resultType: str = "streams"
    encodingFlags: list[str] | None = None


class _WholeAnswer(msgspec.Struct):
    status: str | None = None
    data: _WholeData | None = None


class _NotNative(Exception):
    """Something the native path does not read exactly as the Python one: the answer goes the Python way."""


# `idformats.from_text` finds a span ID only in a line holding one of these (its guards, and Datadog's `dd.`).
_SPAN_HINTS = (*idformats._SPAN_HINTS, "dd.")


def _well_known_span(line: str) -> str | None:
    return idformats.from_text(line, False).span_id


_StreamContext = tuple[str, str | None, dict[str, str], str | None, Mapping[str, str], str | None, str | None]  # see `_stream_context`


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What the native parse needs that depends only on the settings (made once per settings object)."""

    settings: LokiSettings
    span_fields: list[str]
    level_fields: list[str]
    finder: Callable[[str, Mapping[str, str]], tuple[str | None, str | None]]
    meta_finder: Callable[[Mapping[str, str]], tuple[str | None, str | None]]
    # Each stream's context by (labels JSON, categorized): a route's answers come from the same few streams.
    contexts: dict[tuple[bytes, bool], _StreamContext] = field(default_factory=dict)
    # Native readers of these settings not reading an answer now (`_reader`): taken and given back whole (list.pop and
    # append), so a thread or a nested parse never shares one.
    idle: list[Any] = field(default_factory=list)


_PREPARED: dict[int, _Prepared] = {}


def _prepared(settings: LokiSettings) -> _Prepared:
    kept = _PREPARED.get(id(settings))
    if kept is None or kept.settings is not settings:
        if len(_PREPARED) >= 64:
            _PREPARED.clear()
        kept = _PREPARED[id(settings)] = _Prepared(
            settings, list(settings.span_id_fields), list(settings.level_fields), span_and_level_finder(settings),
            metadata_span_and_level(settings))
    return kept


_CONTEXTS = 256  # stream contexts remembered per settings
_FIELDS = list(_native.LOG_LINE_FIELDS)
_HINTS = list(_SPAN_HINTS)


def _native_lines(raw: bytes | bytearray, settings: LokiSettings, memo: Any = None) -> tuple[list[LogLine], int] | None:
    """`_lines` by the native extension: entries decoded, line IDs hashed, span IDs and levels of text
    lines found, LogLines built, all in one native loop; JSON bodies, odd lines and each distinct metadata
    object are handed back to the Python code per line. None: parse it in Python.

    The whole answer in one pass (`LokiLines.answer`) when the extension has it and the answer has the usual
    shape, else msgspec splits the envelope and each stream's entries are read natively (`LokiLines.stream`)."""
    native = _native.MODULE
    if native is None:
        return None
    prepared = _prepared(settings)
    if hasattr(native.LokiLines, "answer"):
        same = _Sharing()
        reader = _reader(native, prepared, same)
        try:
            got = reader.answer(raw, _stream_context(prepared, same), memo)
        except _NotNative:
            got = None
        finally:
            if hasattr(reader, "renew") and len(prepared.idle) < _IDLE_READERS:
                prepared.idle.append(reader)
        if got is not None:
            return got, len(got)
    return _two_pass_lines(native, raw, prepared)


_IDLE_READERS = 4  # per settings: one is what a single event loop uses


def _reader(native: Any, prepared: _Prepared, same: _Sharing) -> Any:
    """A native reader for one answer: an idle one of these settings renewed (`LokiLines.renew`: it forgets the last
    answer, as a new one knows nothing), else a new one (bench P3: making one was ~15 k instructions, dropping it ~10 k)."""
    if prepared.idle:
        try:
            reader = prepared.idle.pop()
        except IndexError:  # another thread took the last one
            return _parser(native, prepared, same)
        reader.renew(_decoder(prepared, same))
        return reader
    return _parser(native, prepared, same)


def _new_memo() -> Any:
    """A memo of read entries for one `fetch`'s lookups (`LokiLines.answer`), or None without the extension."""
    native = _native.MODULE
    memo = getattr(native, "LokiMemo", None) if native is not None else None
    return memo() if memo is not None else None


def _decoder(prepared: _Prepared, same: _Sharing) -> Callable[[bytes], tuple[Mapping[str, str] | None, str | None, str | None]]:
    meta_span_and_level = prepared.meta_finder

    def decode_metadata(key: bytes) -> tuple[Mapping[str, str] | None, str | None, str | None]:
        try:
            found = _metadata(orjson.loads(key), same)
        except orjson.JSONDecodeError:
            raise _NotNative from None
        return (found, *meta_span_and_level(found)) if found is not None else (None, None, None)

    return decode_metadata


def _parser(native: Any, prepared: _Prepared, same: _Sharing) -> Any:
    return native.LokiLines(LogLine, _FIELDS, prepared.span_fields, prepared.level_fields, _HINTS, prepared.finder,
                            _well_known_span, _decoder(prepared, same))


def _stream_context(prepared: _Prepared, same: _Sharing) -> Callable[[bytes, bool], _StreamContext | None]:
    """What every line of a stream shares, from its labels' JSON (None: the two-pass way says what is wrong)."""
    settings = prepared.settings
    meta_span_and_level = prepared.meta_finder

    contexts = prepared.contexts

    def context(raw_labels: bytes, categorized: bool) -> _StreamContext | None:
        kept = contexts.get((raw_labels, categorized))
        if kept is None:
            kept = read(raw_labels, categorized)
            if kept is not None:
                if len(contexts) >= _CONTEXTS:
                    contexts.clear()
                contexts[raw_labels, categorized] = kept
        return kept

    def read(raw_labels: bytes, categorized: bool) -> _StreamContext | None:
        try:
            labels = _strings(orjson.loads(raw_labels))
        except orjson.JSONDecodeError:
            return None
        service = labels.get(settings.service_label)
        prefix = f"|{service}|"
        if not _is_utf8(prefix):
            return None
        label_level = next((labels[f].lower() for f in settings.level_fields if labels.get(f)), None)
        folded = None if categorized else same.mapping({k: v for k, v in labels.items() if not k.startswith("__error")})
        default = folded if folded is not None else _NO_METADATA
        return (prefix, service, labels, same.text(label_level), default, *meta_span_and_level(default))

    return context


def _two_pass_lines(native: Any, raw: bytes | bytearray, prepared: _Prepared) -> tuple[list[LogLine], int] | None:
    """msgspec splits the envelope, then each stream's entries are read natively."""
    try:
        answer = _lazyjson.envelope(raw, _WholeAnswer)
    except _lazyjson.NotJson:
        return None  # the Python parse says what is wrong, in its own words
    if answer is None or answer.status != "success" or answer.data is None or answer.data.resultType != "streams":
        return None
    categorized = "categorize-labels" in (answer.data.encodingFlags or ())
    same = _Sharing()
    parser = _parser(native, prepared, same)
    context = _stream_context(prepared, same)
    lines: list[LogLine] = []
    for stream in answer.data.result:
        shared = context(bytes(stream.stream), categorized)
        if shared is None:
            # Labels orjson refuses: NotJson, as the Python parse would say; else (a service no UTF-8 can hold) Python's.
            _lazyjson.item(stream.stream)
            return None
        try:
            got = parser.stream(stream.values, *shared)
        except _NotNative:
            return None
        if got is None:
            return None
        lines += got
    return lines, len(lines)


class _Sharing:
    """One copy of each equal string / metadata mapping within one answer (bounded)."""

    LIMIT = 4096  # distinct values remembered; unique-per-line metadata stops being looked up

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._mappings: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}

    def text(self, value: str | None) -> str | None:
        if value is None:
            return None
        kept = self._texts.get(value)
        if kept is None and len(self._texts) < self.LIMIT:
            self._texts[value] = kept = value
        return kept or value

    def mapping(self, value: dict[str, str]) -> Mapping[str, str]:
        if not value:
            return _NO_METADATA
        if len(self._mappings) >= self.LIMIT:
            return value
        return self._mappings.setdefault(tuple(value.items()), value)


def merge_duplicate(kept: LogLine, other: LogLine) -> LogLine:
    """The same entry from both lookups: keep the richer metadata (the metadata lookup's)."""
    if other is kept:
        return kept
    if (other.level == kept.level and other.span_id == kept.span_id and other.labels == kept.labels
            and other.metadata == kept.metadata):
        return kept  # read the same way by both lookups (the usual case): the merge would equal it
    richer, poorer = (other, kept) if len(other.metadata) > len(kept.metadata) else (kept, other)
    return LogLine(
        id=kept.id, timestamp_ns=kept.timestamp_ns, line=kept.line, service=kept.service,
        level=richer.level or poorer.level, labels=richer.labels,
        metadata={**poorer.metadata, **richer.metadata}, span_id=richer.span_id or poorer.span_id,
    )


_TIME_AND_ID = operator.attrgetter("timestamp_ns", "id")  # the (time, ID) order of a lookup's merged lines


def _same_check(passed: LogLine, line: LogLine) -> bool:
    """`carries_trace` would answer for `line` as it did for `passed` (it reads only the text and the metadata)."""
    return passed.line == line.line and passed.metadata == line.metadata


def carries_trace(line: LogLine, trace_id: TraceId, settings: LokiSettings, spellings: Sequence[str] | None = None) -> bool:
    """The line carries `trace_id` itself (metadata field or a whole token in the line), not a longer hex run
    that merely contains the line filter's needle. `spellings`: `trace_id.spellings`, when the caller checks many lines."""
    metadata = line.metadata
    for name in settings.trace_id_fields if metadata else ():
        value = metadata.get(name)
        if value:
            if value == trace_id.hex:  # as written by most SDKs: no need to parse it
                return True
            try:
                written = parse_trace_id(value).hex
            except InvalidTraceId:
                continue
            if written == trace_id.hex or (trace_id.lower64_only and written[16:] == trace_id.hex[16:]):
                return True
    if trace_id.lower64_only:
        return lower64_carried(line.line, trace_id)
    return line_carries(line.line, trace_id.spellings if spellings is None else spellings)


T = TypeVar("T")


async def _each(calls: Iterable[Coroutine[Any, Any, T]]) -> list[T | BaseException]:
    """`asyncio.gather(*calls, return_exceptions=True)` with the first call in this task, the others in tasks (bench
    P3: a task and the gather's future fewer per lookup pair). Every call runs to its end; a cancellation of this
    task cancels the others and is raised, as the gather's is."""
    first, *rest = calls if isinstance(calls, list) else list(calls)
    tasks = [asyncio.ensure_future(call) for call in rest]
    results: list[T | BaseException] = []
    try:
        try:
            results.append(await first)
        except Exception as exc:
            results.append(exc)
        for task in tasks:
            try:
                results.append(await task)
            except Exception as exc:
                results.append(exc)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    return results


class LokiSource:
    def __init__(self, settings: LokiSettings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client

    def selector(self, services: Sequence[str] | None) -> str:
        """The stream selector: the trace's services, else (unknown / strategy "static") the configured one."""
        # Names no LogQL literal can hold (empty, lone surrogates) cannot narrow the search.
        usable = [s for s in services or () if s and _is_utf8(s)]
        if self.settings.selector_strategy == "services" and usable:
            return _services_selector(self.settings.service_label, tuple(usable))
        return self.settings.static_selector

    def queries(self, trace_id: TraceId, services: Sequence[str] | None) -> tuple[str, ...]:
        """(line filter, structured-metadata filter) for this ID over the services' streams.

        An ID known only by its lower 64 bits (a Datadog line) adds its decimal spelling: the
        16-hex line filter finds every line whose full ID ends with those bits, not Datadog's own.
        """
        selector = self.selector(services)
        # OTLP writes 32 hex into metadata; a pushed 64-bit ID may be the 16-character form.
        hexes = [trace_id.hex] + ([trace_id.short] if trace_id.is_64bit else [])
        queries = [line_filter_query(selector, trace_id.needle), metadata_query(selector, hexes)]
        if trace_id.lower64_only:
            queries.append(line_filter_query(selector, trace_id.low64_decimal))
        return tuple(queries)

    async def _query(self, query: str, window: Window, tenant: str | None, limit: int | None = None,
                     direction: str = "backward", memo: Any = None) -> tuple[list[LogLine], bool]:
        limit = limit or self.settings.max_lines
        params = {"query": query, "start": _ns_param(window.start_ns), "end": _ns_param(window.end_ns),
                  "limit": str(limit), "direction": direction}
        headers = dict(_ENCODING_FLAGS)
        org = tenant or self.settings.tenant
        if org:
            headers["X-Scope-OrgID"] = org
        answer = await get(self.client, SOURCE, PATH, params, headers, self.settings.max_response_bytes)
        if answer.status != 200:
            hint = " (a multi-tenant Loki needs loki.tenant / X-Scope-OrgID)" if answer.status == 401 else ""
            raise SourceHTTPError(SOURCE, answer.status, f"{answer.status} from GET {PATH}: {answer.text(300)}{hint}")
        try:
            lines, entries = parse_streams_body(answer.body, self.settings, memo)
        except _lazyjson.NotJson:
            raise not_json(SOURCE, answer, f"GET {PATH}") from None
        except (ValueError, TypeError, IndexError, AttributeError) as exc:
            raise SourceProtocolError(SOURCE, f"GET {PATH}: unexpected answer ({exc})") from None
        return lines, entries >= limit

    async def fetch(self, trace_id: TraceId, window: Window, services: Sequence[str] | None,
                    tenant: str | None = None) -> SourceResult[tuple[LogLine, ...]]:
        """Every line carrying `trace_id` in `window` (± margin), oldest first.

        `tenant` (the caller's X-Scope-OrgID) wins over `settings.tenant`. One failed lookup
        still returns the other's lines, marked truncated with a note; two failures raise.
        """
        wide = window.widened(round(self.settings.margin_seconds * 1e9))
        # Loki's `end` is exclusive: one more ns keeps a line stamped exactly at the end.
        wide = Window(wide.start_ns, wide.end_ns + 1)
        # A real Loki returns a line carrying the ID in its text and its metadata to both lookups: read once (the memo).
        answers, failures = await self._lookups(_LOOKUPS, self.queries(trace_id, services), wide, tenant, None, _new_memo())
        merged: dict[str, LogLine] = {}
        truncated = False
        cuts: list[int] = []  # the oldest line of each lookup that hit its limit
        spellings = trace_id.spellings  # computed once, not per line
        checked: dict[str, LogLine] = {}  # per ID, the line that passed the trace check
        settings = self.settings
        for lines, cut in answers:
            truncated |= cut
            if cut and lines:
                cuts.append(min(line.timestamp_ns for line in lines))
            for line in lines:
                line_id = line.id
                passed = checked.get(line_id)
                if passed is None:
                    if carries_trace(line, trace_id, settings, spellings):
                        checked[line_id] = merged[line_id] = line
                elif passed is line and merged[line_id] is line:
                    continue  # the very line kept already (the lookups share what they read): merged with itself, it stays
                elif _same_check(passed, line) or carries_trace(line, trace_id, settings, spellings):
                    # The check reads only the text and the metadata: a copy equal in both carries the trace too.
                    merged[line_id] = merge_duplicate(merged[line_id], line)
        ordered = tuple(sorted(merged.values(), key=_TIME_AND_ID))
        note = None
        if failures:
            name, failure = failures[0]
            note = f"partial: the {name} lookup failed: {failure}"
        return SourceResult(ordered, truncated=truncated or bool(failures), note=note, cut=self._cut(cuts))

    def _cut(self, oldest_kept: Sequence[int]) -> str | None:
        # Lookups ask for the newest lines first (`direction=backward`): a full answer lost the oldest.
        if not oldest_kept:
            return None
        return (f"a lookup returned its limit of {self.settings.max_lines:,} lines (loki.max_lines) and Loki keeps "
                f"the newest: lines before {rfc3339_ns(max(oldest_kept))} may be missing")

    def queries_many(self, trace_ids: Sequence[TraceId], services: Sequence[str] | None) -> tuple[str, str]:
        """The two lookups of `queries`, each matching any of several IDs (one query, not one per ID)."""
        selector = self.selector(services)
        hexes = [h for t in trace_ids for h in ([t.hex] + ([t.short] if t.is_64bit else []))]
        return line_filter_any_query(selector, [t.needle for t in trace_ids]), metadata_any_query(selector, hexes)

    async def fetch_many(self, trace_ids: Sequence[TraceId], window: Window, services: Sequence[str] | None,
                         tenant: str | None = None) -> SourceResult[dict[str, tuple[LogLine, ...]]]:
        """`fetch` for several traces over one window: the same two lookups, split per trace (by hex).

        The answer's line limit grows with the number of traces, up to Loki's 5000 per query.
        """
        wide = window.widened(round(self.settings.margin_seconds * 1e9))
        wide = Window(wide.start_ns, wide.end_ns + 1)
        limit = min(_LOKI_MAX_ENTRIES, self.settings.max_lines * max(1, len(trace_ids)))
        answers, failures = await self._lookups(_MANY_LOOKUPS, self.queries_many(trace_ids, services), wide, tenant, limit,
                                                _new_memo())
        merged: dict[str, dict[str, LogLine]] = {t.hex: {} for t in trace_ids}
        truncated = False
        for lines, cut in answers:
            truncated |= cut
            for line in lines:
                for trace_id in self._carried(line, trace_ids):
                    mine = merged[trace_id.hex]
                    mine[line.id] = merge_duplicate(mine[line.id], line) if line.id in mine else line
        split = {hex_: tuple(sorted(lines_.values(), key=_TIME_AND_ID))
                 for hex_, lines_ in merged.items()}
        note = f"partial: the {failures[0][0]} lookup failed: {failures[0][1]}" if failures else None
        return SourceResult(split, truncated=truncated or bool(failures), note=note)

    async def _lookups(self, names: Sequence[str], queries: Sequence[str], window: Window, tenant: str | None,
                       limit: int | None = None,
                       memo: Any = None) -> tuple[list[tuple[list[LogLine], bool]], list[tuple[str, SourceError]]]:
        """Run the lookups at once: (each answer that came, (name, error) of each that failed).
        All failing raises the first failure; anything but a SourceError is a bug or a cancellation and is raised."""
        results = await _each(self._query(q, window, tenant, limit, memo=memo) for q in queries)
        answers: list[tuple[list[LogLine], bool]] = []
        failures: list[tuple[str, SourceError]] = []
        for name, result in zip(names, results, strict=False):
            if isinstance(result, SourceError):
                failures.append((name, result))
            elif isinstance(result, BaseException):
                raise result
            else:
                answers.append(result)
        if not answers:
            raise failures[0][1]
        return answers, failures

    def _carried(self, line: LogLine, trace_ids: Sequence[TraceId]) -> list[TraceId]:
        """Which of `trace_ids` the line really carries (usually one)."""
        lowered = line.line.lower()
        return [t for t in trace_ids if (t.needle in lowered or line.metadata) and self._carries(line, t)]

    def _carries(self, line: LogLine, trace_id: TraceId, spellings: Sequence[str] | None = None) -> bool:
        return carries_trace(line, trace_id, self.settings, spellings)

    async def fetch_untraced(self, window: Window, services: Sequence[str], limit: int,
                             tenant: str | None = None) -> SourceResult[tuple[LogLine, ...]]:
        """Lines of `services` in `window` that carry no trace ID at all (not in metadata, not in the line).

        Oldest first, at most `limit` (truncated then): the caller attaches them by service and time.
        """
        answer = await self.untraced_answer(window, services, limit, tenant)
        wanted = set(services)
        kept = tuple(line for line, named in answer.entries if line.service in wanted and not named)
        return SourceResult(kept, truncated=answer.cut)

    async def untraced_answer(self, window: Window, services: Sequence[str] | None, limit: int,
                              tenant: str | None = None) -> LinesAnswer:
        """The untraced-lines query's every entry of `services` (None: the static selector's streams) in
        `window`, oldest first, each with whether it names a trace (untraced_share.py cuts answers out of it)."""
        query = untraced_query(self.selector(services), "trace_id")
        lines, cut = await self._query(query, Window(window.start_ns, window.end_ns + 1), tenant, limit, "forward")
        lines.sort(key=lambda line: line.timestamp_ns)  # stable: Loki's order within an instant
        # Every entry, whatever its service: the last one's instant says how far a cut answer is complete.
        entries = tuple((line, self._names_a_trace(line)) for line in lines)
        return LinesAnswer(window, frozenset(services) if services is not None else None, entries, cut)

    def _names_a_trace(self, line: LogLine) -> bool:
        if any(line.metadata.get(name) for name in self.settings.trace_id_fields):
            return True
        return extract_trace_context(line.line, self.settings).trace_id is not None

    async def ready(self) -> None:
        """Raises a SourceError unless Loki's /ready answers 200."""
        answer = await get(self.client, SOURCE, "/ready", None, None, 64 * 1024)
        if answer.status != 200:
            raise SourceHTTPError(SOURCE, answer.status, f"{answer.status} from GET /ready: {answer.text(200)}")

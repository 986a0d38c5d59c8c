"""Pure: LogQL building with every interpolated value escaped (no LogQL injection).

Loki's lexer reads double-quoted literals with Go's escapes and rejects invalid UTF-8 and
lone surrogates (reference/backend-apis.md §2.11). `json.dumps(ensure_ascii=False)` writes
exactly the escapes Go accepts while keeping non-ASCII as raw UTF-8 (ensure_ascii=True
would write surrogate pairs, which Loki refuses). Label names cannot be quoted: validated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

__all__ = ["label_name", "line_filter_any_query", "line_filter_query", "metadata_any_query", "metadata_query", "quote",
           "regex_escape", "stream_selector", "untraced_query"]

_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# RE2 metacharacters; `-` is special only inside a class, which we never open, so
# "api-gateway" stays readable (and equal to the queries recorded against a real Loki).
_RE2_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def quote(value: str) -> str:
    """A double-quoted LogQL string literal holding exactly `value`.

    Raises ValueError for strings that are not valid UTF-8 (lone surrogates): Loki's lexer
    refuses them, and no escape spells them.
    """
    if value.isascii() and value.isalnum():
        return f'"{value}"'  # letters and digits (a trace ID, a decimal): nothing to escape (per fetch, twice)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("LogQL literals must be valid UTF-8 (no lone surrogates)") from None
    return json.dumps(value, ensure_ascii=False)


def regex_escape(value: str) -> str:
    """`value` as an RE2 pattern matching itself literally (before quoting)."""
    return _RE2_META.sub(r"\\\1", value)


def label_name(name: str) -> str:
    """`name` unchanged when it is a Loki label name; label names have no quoting."""
    if not _LABEL.fullmatch(name):
        raise ValueError(f"{name!r} is not a Loki label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return name


def stream_selector(label: str, values: Sequence[str]) -> str:
    """{label="v"} for one value, {label=~"a|b"} for several (sorted, de-duplicated, regex-escaped).

    Empty values are dropped: `label=""` or an empty alternative would make the selector
    empty-compatible, which Loki refuses.
    """
    label = label_name(label)
    unique = sorted({v for v in values if v})
    if not unique:
        raise ValueError("a stream selector needs at least one non-empty value")
    if len(unique) == 1:
        return f"{{{label}={quote(unique[0])}}}"
    return f"{{{label}=~{quote('|'.join(regex_escape(v) for v in unique))}}}"


def line_filter_query(selector: str, needle: str) -> str:
    """IDs written anywhere in the line body (text, JSON, logfmt): `{…} |= "needle"`."""
    return f"{selector} |= {quote(needle)}"


def metadata_query(selector: str, trace_id_hexes: Sequence[str], field: str = "trace_id") -> str:
    """IDs in structured metadata (OTLP-ingested logs): `{…} | trace_id="…" [or trace_id="…"]`."""
    field = label_name(field)
    if not trace_id_hexes:
        raise ValueError("a metadata filter needs at least one value")
    return f"{selector} | " + " or ".join(f"{field}={quote(v)}" for v in trace_id_hexes)


def line_filter_any_query(selector: str, needles: Sequence[str]) -> str:
    """Lines carrying any of several IDs in one query: `{…} |= "a"` for one, `{…} |~ "a|b|…"` for more.

    Loki turns an alternation of literals into a contains-any filter (no regex engine per line).
    """
    unique = sorted({n for n in needles if n})
    if not unique:
        raise ValueError("a line filter needs at least one value")
    if len(unique) == 1:
        return line_filter_query(selector, unique[0])
    return f"{selector} |~ {quote('|'.join(regex_escape(n) for n in unique))}"


def metadata_any_query(selector: str, trace_id_hexes: Sequence[str], field: str = "trace_id") -> str:
    """Structured metadata holding any of several IDs: `{…} | trace_id=~"a|b|…"` (anchored, like all label regexes)."""
    unique = sorted({h for h in trace_id_hexes if h})
    if len(unique) <= 1:
        return metadata_query(selector, unique, field)
    return f"{selector} | {label_name(field)}=~{quote('|'.join(regex_escape(h) for h in unique))}"


def untraced_query(selector: str, field: str = "trace_id") -> str:
    """Lines with no trace ID in structured metadata: `{…} | trace_id=""` (an absent label is empty).

    Lines whose body carries an ID still match; the caller drops those after parsing.
    """
    return f"{selector} | {label_name(field)}=\"\""

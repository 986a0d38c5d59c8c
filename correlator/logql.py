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

__all__ = ["line_filter_query", "metadata_query", "quote", "regex_escape", "stream_selector"]

_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# RE2 metacharacters; `-` is special only inside a class, which we never open.
_RE2_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def quote(value: str) -> str:
    """A double-quoted LogQL string literal holding exactly `value`."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("LogQL literals must be valid UTF-8 (no lone surrogates)") from None
    return json.dumps(value, ensure_ascii=False)


def regex_escape(value: str) -> str:
    return _RE2_META.sub(r"\\\1", value)


def label_name(name: str) -> str:
    if not _LABEL.fullmatch(name):
        raise ValueError(f"{name!r} is not a Loki label name")
    return name


def stream_selector(label: str, values: Sequence[str]) -> str:
    """{label="v"} for one value, {label=~"a|b"} for several (sorted, regex-escaped)."""
    label = label_name(label)
    unique = sorted(set(values))
    if not unique:
        raise ValueError("a stream selector needs at least one value")
    if len(unique) == 1:
        return f"{{{label}={quote(unique[0])}}}"
    return f"{{{label}=~{quote('|'.join(regex_escape(v) for v in unique))}}}"


def line_filter_query(selector: str, needle: str) -> str:
    """IDs written anywhere in the line body (text, JSON, logfmt)."""
    return f"{selector} |= {quote(needle)}"


def metadata_query(selector: str, field: str, values: Sequence[str]) -> str:
    """IDs in structured metadata (OTLP-ingested logs): `| trace_id="…" [or trace_id="…"]`."""
    field = label_name(field)
    return f"{selector} | " + " or ".join(f"{field}={quote(v)}" for v in values)

"""N+1: one call per item — many sibling spans doing the same thing, one after another."""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Sequence

from correlator.analysis.common import MS, Context, fmt_ms, shorten
from correlator.config import AnalysisSettings
from correlator.model import Finding, Severity, Span
from correlator.spantree import SpanTree

__all__ = ["n_plus_one", "n_plus_one_groups", "normalise_path", "normalise_statement", "sequential_share"]

_STRING = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\"")
_NUMBER = re.compile(r"(?<![\w$])(?:0x[0-9a-fA-F]+|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?!\w)")
_IN_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)")
_VALUES_ROWS = re.compile(r"\(\?\)(?:\s*,\s*\(\?\))+")  # VALUES (?), (?), … once the rows are collapsed
_SPACE = re.compile(r"\s+")
# Path segments that are IDs: numbers, UUIDs, long hex. `/users/42` and `/users/43` are one call.
_ID_SEGMENT = re.compile(r"(?<=/)(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}|[0-9a-fA-F]{16,})(?=/|$|\?|\s)")


def normalise_statement(statement: str) -> str:
    """Literals stripped so `WHERE id = 7` and `WHERE id = 8` are one query shape."""
    shape = _STRING.sub("?", statement)
    shape = _NUMBER.sub("?", shape)
    shape = _IN_LIST.sub("(?)", shape)
    shape = _VALUES_ROWS.sub("(?)", shape)
    return _SPACE.sub(" ", shape).strip()


def normalise_path(text: str) -> str:
    """IDs in URL paths (and span names built from them) replaced by `{id}`."""
    return _ID_SEGMENT.sub("{id}", text.split("?", 1)[0])


def _shape(span: Span) -> str:
    """What the call does, literals and IDs stripped: the statement, the route, else the name."""
    attrs = span.attributes
    for key in ("db.query.text", "db.statement"):
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return normalise_statement(value)
    for key in ("url.template", "http.route"):
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return value
    for key in ("url.path", "http.target"):
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return f"{span.operation} {normalise_path(value)}"
    return normalise_path(span.operation)


def sequential_share(spans: Sequence[Span]) -> float:
    """Share of neighbouring pairs (by start) that do not overlap: 1.0 is a plain loop."""
    ordered = sorted(spans, key=lambda sp: (sp.start_ns, sp.end_ns))
    if len(ordered) < 2:
        return 0.0
    return sum(1 for a, b in itertools.pairwise(ordered) if b.start_ns >= a.end_ns) / (len(ordered) - 1)


def n_plus_one_groups(tree: SpanTree, settings: AnalysisSettings) -> tuple[tuple[str, tuple[Span, ...], str], ...]:
    """(parent, members by start, shape) for every sibling group that looks like a loop."""
    groups = []
    for parent, kids in tree.children.items():
        if len(kids) < settings.n_plus_one_min_count:
            continue
        by_key: dict[tuple[str, str, str], list[Span]] = defaultdict(list)
        for kid in kids:  # already by start time
            span = tree.by_id[kid]
            by_key[(span.service, normalise_path(span.operation), _shape(span))].append(span)
        for (_service, _operation, shape), spans in by_key.items():
            if len(spans) >= settings.n_plus_one_min_count and \
                    sequential_share(spans) >= settings.n_plus_one_sequential_share:
                groups.append((parent, tuple(spans), shape))
    return tuple(groups)


def n_plus_one(ctx: Context) -> list[Finding]:
    out = []
    for parent, spans, shape in ctx.n_plus_one:
        total = sum(sp.duration_ns for sp in spans)
        saved = total - max(sp.duration_ns for sp in spans)  # one batched call ≈ the slowest single one
        out.append(Finding(
            "n_plus_one", Severity.WARNING,
            f"{len(spans)} × {shorten(shape)} ({fmt_ms(total)}) — N+1; batching would save ~{fmt_ms(saved)}",
            tuple(sp.span_id for sp in spans),
            {"count": len(spans), "total_ms": total / MS, "saved_ms": saved / MS, "statement": shape,
             "service": spans[0].service, "operation": spans[0].operation, "parent_span_id": parent,
             "sequential_share": round(sequential_share(spans), 3)},
            # The loop's whole time counts where it sits on the critical path (children included).
            impact_ns=sum(sp.duration_ns for sp in spans if sp.span_id in ctx.held),
        ))
    return out

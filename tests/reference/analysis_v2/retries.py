"""Retries: a failed call followed by the same call again.

A sibling doing the same operation (same `operation_key`) after a failed one is its retry
when it carries the same arguments (the key attributes and raw statement, outcome and
bookkeeping attributes left out), or when an event or log line — on either call or on the
parent between them — calls it a retry ("Retrying GetDriver after error").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from correlator.model import LogLine, Span
from correlator.spantree import SpanTree
from tests.reference.analysis_v2.events import mentions_retry
from tests.reference.analysis_v2.identity import OperationKey

__all__ = ["arguments", "find_retries"]

# Attributes that describe the outcome or the attempt, not what was asked for.
_OUTCOME_PREFIXES = ("otel.", "exception.", "error", "thread.", "code.", "net.sock.", "network.peer.", "http.response.",
                     "db.response.", "rpc.grpc.status", "retry", "status")
_OUTCOME_WORDS = frozenset(("status", "duration", "attempt", "retry", "retries", "resend", "error", "port", "elapsed"))
_SEPARATORS = re.compile(r"[._\-]")


def _is_argument(key: str) -> bool:
    return not key.startswith(_OUTCOME_PREFIXES) and _OUTCOME_WORDS.isdisjoint(_SEPARATORS.split(key.lower()))


def arguments(span: Span) -> tuple[tuple[str, Any], ...]:
    """The call's arguments as far as the span records them: key attributes, raw statement, URL."""
    return tuple(sorted((k, v) for k, v in span.attributes.items()
                        if _is_argument(k) and isinstance(v, str | int | float | bool)))


def find_retries(tree: SpanTree, keys: Mapping[str, OperationKey], failing: frozenset[str],
                 span_logs: Mapping[str, Sequence[LogLine]]) -> dict[str, str]:
    """retry span id → the failed sibling it repeats (each failure retried at most once here; chains follow)."""
    out: dict[str, str] = {}
    parents = {tree.by_id[sid].parent_span_id for sid in failing}
    for parent in parents:
        if parent is None or parent not in tree.children:
            continue
        kids = tree.children[parent]
        for i, failed_id in enumerate(kids):
            if failed_id not in failing:
                continue
            failed = tree.by_id[failed_id]
            key = keys[failed_id]
            args = arguments(failed)
            for later_id in kids[i + 1:]:
                if later_id in out or keys[later_id] != key:
                    continue
                later = tree.by_id[later_id]
                if later.start_ns < failed.end_ns:
                    continue  # ran alongside the failure: a parallel call, not a second attempt
                same_args = bool(args) and arguments(later) == args
                said = (mentions_retry(later, span_logs.get(later_id, ()))
                        or mentions_retry(failed, span_logs.get(failed_id, ()), failed.start_ns)
                        or mentions_retry(tree.by_id[parent], span_logs.get(parent, ()), failed.start_ns, later.start_ns))
                if same_args or said:
                    out[later_id] = failed_id
                break  # only the next same-operation call can be this failure's retry
    return out

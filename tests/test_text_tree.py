"""The seed-style text tree: what a person reads in the terminal."""

from __future__ import annotations

from correlator.analysis import analyse
from correlator.config import AnalysisSettings
from correlator.model import Span, SpanEvent, Trace
from correlator.spantree import build_tree
from correlator.text_tree import render_tree
from tests.test_analysis import CACHE, DB, MS, T0, seed_trace, sid, span, trace

S = AnalysisSettings()


def draw(t: Trace, **kw: object) -> str:
    tree = build_tree(t)
    return render_tree(tree, analyse(tree, S), **kw)  # type: ignore[arg-type]


def test_the_seed_tree() -> None:
    """GET /api/courses draws like the tutorial — nesting, durations, the bottleneck marked, total last — with
    start offsets, and ● on the critical path (every step of this synchronous request is on it)."""
    assert draw(seed_trace()) == "\n".join([
        "Request: GET /api/courses",
        "├── ● +0ms api-gateway: GET /api/courses (145ms)",
        "│   ├── ● +5.0ms auth-service: validate token (15ms)",
        "│   └── ● +20ms course-service: GET /courses (120ms)",
        "│       ├── ● +25ms course-service: SELECT courses (80ms) ← Bottleneck!",
        "│       └── ● +106ms course-service: cache lookup (5.0ms)",
        "└── Response (total: 145ms)",
    ])


def test_log_and_exemplar_counts_and_a_custom_title() -> None:
    """Counts appear only where non-zero, singular and plural spelt right; the caller's title is used."""
    text = draw(seed_trace(), log_counts={DB: 3, CACHE: 1}, exemplar_counts={DB: 1}, title="Request: GET /api/courses?page=2")
    assert text.splitlines()[0] == "Request: GET /api/courses?page=2"
    assert "│       ├── ● +25ms course-service: SELECT courses (80ms) [3 logs, 1 exemplar] ← Bottleneck!" in text
    assert "│       └── ● +106ms course-service: cache lookup (5.0ms) [1 log]" in text


def test_error_spans_are_marked_with_their_message() -> None:
    """A failing span carries ✗ error and why."""
    text = draw(trace(span(1, None, 0, 100, "api", "GET"), span(2, 1, 10, 20, "db", "SELECT", status="error",
                                                                status_message="deadlock detected")))
    assert "│   └── ● +10ms db: SELECT (10ms) ✗ error: deadlock detected" in text


def test_the_exception_message_beats_a_generic_status_message() -> None:
    """'An error occurred' says nothing; the exception event says what happened."""
    failed = span(2, 1, 10, 20, "cache", "get", status="error", status_message="An error occurred",
                  events=(SpanEvent("exception", T0 + 19 * MS, {"exception.message": "redis timeout after 10ms"}),))
    text = draw(trace(span(1, None, 0, 100, "api", "GET"), failed))
    assert "cache: get (10ms) ✗ error: redis timeout after 10ms" in text and "An error occurred" not in text


def test_an_n_plus_one_loop_collapses_into_one_line() -> None:
    """12 lesson queries become one "× 12 …" line between their neighbours, with their logs summed."""
    spans = [span(1, None, 0, 100, "course", "GET /lessons"), span(2, 1, 0, 4, "course", "auth")]
    spans += [span(i + 3, 1, 5 + i * 6, 10 + i * 6, "course", "SELECT", attributes={"db.statement": f"SELECT * FROM lessons WHERE course_id = {i}"})
              for i in range(12)]
    spans.append(span(20, 1, 90, 95, "course", "render"))
    lines = draw(trace(*spans), log_counts={sid(3): 1, sid(4): 1}).splitlines()
    assert lines[1:6] == [
        "├── ● +0ms course: GET /lessons (100ms) ← Bottleneck!",  # 31 ms of its own between the queries
        "│   ├── ● +0ms course: auth (4.0ms)",
        "│   ├── ● +5.0ms × 12 SELECT * FROM lessons WHERE course_id = ? (60ms, 5.0ms each) [2 logs] ← N+1",
        "│   └── ● +90ms course: render (5.0ms)",
        "└── Response (total: 100ms)",
    ]


def test_failures_inside_a_collapsed_loop_stay_visible() -> None:
    """A loop of 6 calls where 2 failed says so on its one line."""
    spans = [span(1, None, 0, 100, "web", "GET")] + [
        span(i + 2, 1, i * 10, i * 10 + 8, "web", "GET /users/{id}", kind="client", status="error" if i in (1, 4) else "ok")
        for i in range(6)]
    assert "│   └── ● +0ms × 6 GET /users/{id} (48ms, 8.0ms each) ← N+1 ✗ 2 failed" in draw(trace(*spans))


def test_output_is_capped_with_a_count_of_what_was_left_out() -> None:
    """max_lines=2 draws two spans and says how many more there are."""
    lines = draw(seed_trace(), max_lines=2).splitlines()
    assert lines == ["Request: GET /api/courses", "├── ● +0ms api-gateway: GET /api/courses (145ms)",
                     "│   ├── ● +5.0ms auth-service: validate token (15ms)", "… 3 more spans", "└── Response (total: 145ms)"]


def test_durations_keep_sensible_precision() -> None:
    """Whole ms from 10 ms up, one decimal below, two below 1 ms."""
    text = draw(trace(span(1, None, 0, 12), Span(sid(2), sid(1), "s", "fast", T0, T0 + 250_000),
                      Span(sid(3), sid(1), "s", "mid", T0 + MS, T0 + MS + 2_340_000)))
    assert "s: fast (0.25ms)" in text and "s: mid (2.3ms)" in text and "svc: op (12ms)" in text


def test_a_5000_deep_trace_draws_without_recursion_and_with_bounded_indent() -> None:
    """Depth 5,000 renders; indentation stops growing and deep lines say their depth instead."""
    spans = tuple(span(i + 1, i or None, i, 10_000 - i) for i in range(5000))
    lines = draw(trace(*spans), max_lines=5000).splitlines()
    assert len(lines) == 5002
    assert lines[-2].endswith("└── (depth 4999) ● +4999ms svc: op (2.0ms)")
    assert max(len(line) for line in lines) < 250


def test_orphans_and_an_empty_trace() -> None:
    """Orphans draw as extra top-level spans; an empty trace still draws a frame."""
    text = draw(trace(span(1, None, 0, 10, "a"), span(2, 99, 2, 5, "b")))
    assert text.splitlines()[1:3] == ["├── ● +0ms a: op (10ms) ← Bottleneck!", "├── +2.0ms b: op (3.0ms)"]
    assert draw(Trace("1" * 32, ())) == "Request: (empty trace)\n└── Response (total: 0ms)"

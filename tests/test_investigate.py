"""The investigation's aggregate, pure: which traces are slow, which are read, what they share.

Traces are built the way the seed's GET /api/courses looks (gateway → auth, course service →
SELECT courses + cache); the slow ones differ by one injected cause, and the aggregate must
name it — as the top suspect, in the slow-vs-baseline comparison and in the log shapes.
"""

from __future__ import annotations

from typing import Any

import pytest

from correlator.analysis import analyse
from correlator.config import AnalysisSettings, load_settings
from correlator.errors import InvalidInput
from correlator.investigate import (
    Candidate,
    candidates,
    compare,
    digest,
    log_patterns,
    mask_message,
    message_of,
    select,
    split_slow,
    suspects,
)
from correlator.investigate_api import parse_request
from correlator.investigate_render import change_message, comparison_summary, investigation_text, suspect_message
from correlator.model import Correlation, Exemplar, LogLine, Match, Placement, Span, SpanEvent, Trace, Window
from correlator.spantree import build_tree

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def course_trace(n: int, db_ms: int, fail: str | None = None) -> Trace:
    """gateway → auth 15 ms, course service → SELECT courses (db_ms) + cache 5 ms."""
    tid = f"{n:032x}"
    t = T0 + n * 10_000 * MS
    ids = [f"{n:08x}{k:08x}" for k in range(5)]
    end_db = t + (25 + db_ms) * MS
    events = (SpanEvent("exception", end_db, {"exception.type": "TimeoutError", "exception.message": fail}),) if fail else ()
    return Trace(tid, (
        Span(ids[0], None, "api-gateway", "GET /api/courses", t, end_db + 40 * MS, kind="server"),
        Span(ids[1], ids[0], "auth-service", "validate token", t + 5 * MS, t + 20 * MS),
        Span(ids[2], ids[0], "course-service", "GET /courses", t + 20 * MS, end_db + 35 * MS),
        Span(ids[3], ids[2], "course-service", "SELECT courses", t + 25 * MS, end_db, kind="client",
             status="error" if fail else "unset", events=events),
        Span(ids[4], ids[2], "course-service", "cache lookup", end_db + 1 * MS, end_db + 6 * MS),
    ))


def correlation(trace: Trace, lines: tuple[str, ...] = ()) -> tuple[Correlation, Any]:
    tree = build_tree(trace)
    analysis = analyse(tree, AnalysisSettings())
    logs = tuple(LogLine(f"log-{trace.trace_id}-{i}", trace.start_ns + i, line, "course-service", "warn")
                 for i, line in enumerate(lines))
    places = (Placement(None, Match.TRACE),) * len(logs)
    return Correlation(trace.trace_id, Window(trace.start_ns, trace.end_ns), trace, logs, places, (), (),
                       analysis.critical_path, analysis.findings, {}), tree


def digests(slow_db: list[int], normal_db: list[int], slow_lines: bool = True, fail: str | None = None) -> list[Any]:
    out = []
    for i, db in enumerate(slow_db):
        lines = (f'{{"level":"warn","msg":"slow query took {db} ms on conn 0x{i + 10:x}ab12cd34ef"}}',) if slow_lines else ()
        c, tree = correlation(course_trace(i + 1, db, fail), lines)
        out.append(digest(c, tree, True, db / 1000))
    for j, db in enumerate(normal_db):
        c, tree = correlation(course_trace(100 + j, db), ("cache hit for course 42",))
        out.append(digest(c, tree, False, db / 1000))
    return out


def exemplar(trace: int, value: float, ts: int = T0, metric: str = "http_server_duration_seconds_bucket") -> Exemplar:
    return Exemplar(f"ex-{trace}-{value}", metric, {"le": "2.5"}, {}, value, ts, f"{trace:032x}")


# ------------------------------------------------------------------ choosing the traces


def test_one_candidate_per_trace_its_slowest_exemplar_slowest_first() -> None:
    found = candidates([exemplar(1, 0.1), exemplar(1, 2.0), exemplar(2, 0.5), exemplar(3, float("nan")),
                        exemplar(4, float("inf"))])
    assert [(c.trace_id[-1], c.value) for c in found] == [("1", 2.0), ("2", 0.5)]


def test_the_widest_jump_separates_slow_from_normal() -> None:
    values = [2.3, 2.1, 1.9, 1.95, 0.16, 0.15, 0.14, 0.12]
    split = split_slow(candidates(exemplar(i, v) for i, v in enumerate(values)))
    assert sorted(c.value for c in split.slow) == [1.9, 1.95, 2.1, 2.3]
    assert split.threshold == 1.9 and "jump" in split.rule


def test_without_a_jump_the_upper_half_is_slow_and_a_given_threshold_wins() -> None:
    values = [1.0, 0.9, 0.8, 0.7, 0.6]
    found = candidates(exemplar(i, v) for i, v in enumerate(values))
    assert [c.value for c in split_slow(found).slow] == [1.0, 0.9, 0.8]
    given = split_slow(found, threshold=0.75)
    assert [c.value for c in given.slow] == [1.0, 0.9, 0.8] and given.rule == "the threshold given"
    assert split_slow([]).slow == () and split_slow([]).threshold is None


def test_selection_keeps_a_quarter_for_the_baseline_spread_over_the_normal_range() -> None:
    found = [Candidate(f"{i:032x}", 10.0 - i * 0.1, T0, "m", {}) for i in range(40)] + \
            [Candidate(f"{100 + i:032x}", 0.5 - i * 0.01, T0, "m", {}) for i in range(30)]
    split = split_slow(found, threshold=5.0)
    chosen = select(split, 20)
    assert len(chosen.slow) == 15 and len(chosen.baseline) == 5 and chosen.left_out == 50
    assert chosen.slow == split.slow[:15]  # the slowest
    assert chosen.baseline[0] == split.normal[0] and chosen.baseline[-1] == split.normal[-1]
    # Few slow ones: the baseline takes the unused quota; few normal ones: the slow ones do.
    few_slow = select(split_slow(found, 9.75), 20)
    assert (len(few_slow.slow), len(few_slow.baseline)) == (3, 17)
    few_normal = select(split_slow(found[:40] + found[40:42], 5.0), 20)
    assert (len(few_normal.slow), len(few_normal.baseline)) == (18, 2)


# ------------------------------------------------------------------ the aggregate


def test_the_injected_cause_is_the_top_suspect_with_counts_median_and_share() -> None:
    slow = [1900, 1850, 2100, 1950, 1700]
    found = suspects(digests(slow, [80, 75, 85, 90]))
    top = found[0]
    assert (top.kind, top.operation) == ("bottleneck", ("course-service", "SELECT courses", ""))
    assert (len(top.slow_traces), top.slow_total) == (5, 5)
    assert top.median_measure_ns == 1900 * MS and 0.9 < top.median_share < 1.0
    assert suspect_message(top).startswith(
        "SELECT courses on course-service is the bottleneck in 5 of 5 slow traces (median 1.9 s, 9")
    assert "in 4 of 4 baseline traces" in suspect_message(top)
    # Its evidence: the slow traces, the one it explains most first.
    assert top.slow_traces[0] == f"{3:032x}"
    # The bottleneck span is also "long" (≥ 1 s of its own): said once, as the bottleneck.
    assert [(s.kind, s.operation[1]) for s in found if s.operation[1] == "SELECT courses"] == [("bottleneck", "SELECT courses")]


def test_errors_are_grouped_by_operation_and_masked_message() -> None:
    ds = digests([1900, 2000, 2100], [80, 80, 80], fail="db timeout after 1900ms")
    errors = [s for s in suspects(ds) if s.kind == "error"]
    assert len(errors) == 1 and len(errors[0].slow_traces) == 3
    assert errors[0].detail == "TimeoutError: db timeout after <n>ms"
    assert suspect_message(errors[0]) == ("SELECT courses on course-service fails in 3 of 3 slow traces: "
                                          "TimeoutError: db timeout after <n>ms; in 0 of 3 baseline traces")


def test_slow_vs_baseline_names_the_operation_that_changed_and_nothing_else() -> None:
    comparison = compare(digests([1900, 1850, 2100, 1950], [80, 75, 85]))
    assert comparison.enough and (comparison.slow_count, comparison.normal_count) == (4, 3)
    # The DB call changed; its parents only contain it: their own time did not change.
    assert [c.operation[1] for c in comparison.changed] == ["SELECT courses"]
    db = next(c for c in comparison.changed if c.operation[1] == "SELECT courses")
    assert change_message(db) == ("SELECT courses on course-service: 80 ms typical → 1.9 s in slow requests "
                                  "(4 slow, 3 baseline traces)")
    assert comparison_summary(comparison).endswith("; everything else unchanged (4 operations)")


def test_too_few_traces_on_a_side_says_so_instead_of_guessing() -> None:
    comparison = compare(digests([1900, 2000, 2100], [80, 90]))
    assert not comparison.enough and comparison.changed == ()
    assert comparison_summary(comparison).startswith("too few traces to compare: 3 slow and 2 baseline")


def test_log_messages_in_most_slow_traces_are_counted_once_per_shape() -> None:
    patterns = log_patterns(digests([1900, 1850, 2100, 1950], [80, 75, 85]))
    assert patterns[0].message == "slow query took <n> ms on conn <id>"
    assert (len(patterns[0].slow_traces), len(patterns[0].normal_traces)) == (4, 0)
    # The baseline's own line is absent from the slow traces: not a slow-trace pattern.
    assert all("cache hit" not in p.message for p in patterns)


def test_messages_are_read_from_json_and_logfmt_and_masked() -> None:
    assert message_of('{"level":"warn","msg":"retry 3 of 5"}') == "retry 3 of 5"
    assert message_of('level=info msg="user 42 logged in" trace_id=abc') == "user 42 logged in"
    assert mask_message("order 5f2b9c1e-8a3d-4e5f-9a0b-1c2d3e4f5a6b for 10.0.0.7:5432 took 12.5ms at "
                        "2026-11-25T10:00:00Z trace 4bf92f3577b34da6a3ce929d0e0e4736") == \
        "order <uuid> for <ip> took <n>ms at <time> trace <id>"


def test_a_lost_trace_in_the_text_report_and_an_empty_window_says_what_to_try() -> None:
    from correlator.investigate_render import empty_body
    from correlator.investigate_run import Request

    body = empty_body(Request("x_bucket", Window(T0, T0 + 3600 * 10**9), 20), 0)
    text = investigation_text(body)
    assert "no exemplars in that window" in text and "widen the window" in text


# ------------------------------------------------------------------ the request


@pytest.mark.parametrize(("params", "param"), [
    ({}, "query"), ({"query": " "}, "query"), ({"query": "x" * 5000}, "query"),
    ({"query": "m", "limit": "0"}, "limit"), ({"query": "m", "limit": "51"}, "limit"), ({"query": "m", "limit": "a"}, "limit"),
    ({"query": "m", "threshold": "-1"}, "threshold"), ({"query": "m", "threshold": "nan"}, "threshold"),
    ({"query": "m", "start": "yesterday"}, "start"), ({"query": "m", "start": "1700000100", "end": "1700000000"}, "start"),
])
def test_bad_input_names_the_parameter(params: dict[str, str], param: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_request(params, load_settings(environ={}), T0)
    assert caught.value.param == param


def test_the_default_window_is_the_lookback_before_now() -> None:
    request = parse_request({"query": "m_bucket"}, load_settings(environ={}), T0)
    assert (request.window, request.limit, request.threshold) == (Window(T0 - 3600 * 10**9, T0), 20, None)


def lessons_trace(n: int, loops: int) -> Trace:
    """gateway → `loops` sequential SELECT lessons (40 ms each): an N+1 when loops ≥ 5."""
    tid, t = f"{n:032x}", T0 + n * 10_000 * MS
    root = Span(f"{n:08x}{0:08x}", None, "api-gateway", "GET /api/courses/7/lessons", t, t + (10 + 40 * loops) * MS)
    calls = tuple(Span(f"{n:08x}{k + 1:08x}", root.span_id, "course-service", "SELECT lessons",
                       t + (5 + 40 * k) * MS, t + (44 + 40 * k) * MS,
                       attributes={"db.statement": f"SELECT * FROM lessons WHERE course_id = {k}"}) for k in range(loops))
    return Trace(tid, (root, *calls))


def test_n_plus_one_is_counted_with_its_calls_and_statement_shape() -> None:
    ds = []
    for i, loops in enumerate([9, 10, 9, 12]):
        c, tree = correlation(lessons_trace(i + 1, loops))
        ds.append(digest(c, tree, True, 0.4))
    for j in range(3):
        c, tree = correlation(lessons_trace(100 + j, 2))
        ds.append(digest(c, tree, False, 0.09))
    loop = next(s for s in suspects(ds) if s.kind == "n_plus_one")
    assert (len(loop.slow_traces), loop.median_count, loop.detail) == (4, 10, "SELECT * FROM lessons WHERE course_id = ?")
    assert suspect_message(loop) == ("N+1 on SELECT lessons on course-service (SELECT * FROM lessons WHERE course_id = ?) in 4 of 4 "
                                     "slow traces (median 10 calls, 370 ms in all); in 0 of 3 baseline traces")

"""The seed's patterns as deterministic detectors: one crafted trace per pattern, negatives,
properties over random (and malformed) trees, a real Jaeger fixture, and big/deep traces."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import given

from correlator.analysis import analyse, critical_path, normalise_statement
from correlator.config import AnalysisSettings
from correlator.model import Span, SpanEvent, Trace
from correlator.sources.jaeger import parse_otlp_trace
from correlator.spantree import build_tree
from tests.conftest import FIXTURES
from tests.strategies import span_trees
from tests.test_join import MS, T0, seed_trace

S = AnalysisSettings()


def kinds(trace: Trace) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in analyse(build_tree(trace), S).findings:
        out.setdefault(f.kind, []).append(f)
    return out


def span(sid: int, parent: int | None, start: int, end: int, service: str = "svc", op: str = "op", **kw: object) -> Span:
    return Span(f"{sid:016x}", f"{parent:016x}" if parent else None, service, op, T0 + start * MS, T0 + end * MS, **kw)  # type: ignore[arg-type]


class TestSeedTrace:
    def test_the_database_query_is_the_bottleneck(self) -> None:
        """GET /api/courses: the 80 ms query holds 55 % of the 145 ms trace on the critical path."""
        found = kinds(seed_trace())
        (bottleneck,) = found["bottleneck"]
        assert bottleneck.span_ids == ("b7ad6b7169203331",)
        assert bottleneck.evidence["self_ms"] == 80.0 and bottleneck.evidence["share"] == round(80 / 145, 4)
        assert bottleneck.severity.value == "warning"
        assert "SELECT courses (80ms)" in bottleneck.message and "55%" in bottleneck.message

    def test_critical_path_runs_through_the_query(self) -> None:
        path, held = critical_path(build_tree(seed_trace()))
        assert path[0] == "00f067aa0ba902b7" and "b7ad6b7169203331" in path
        assert held["b7ad6b7169203331"] == 80 * MS
        assert sum(held.values()) == 145 * MS

    def test_findings_are_sorted_by_impact(self) -> None:
        findings = analyse(build_tree(seed_trace()), S).findings
        assert findings[0].kind == "bottleneck"
        assert [f.impact_ns for f in findings] == sorted((f.impact_ns for f in findings), reverse=True)


class TestNPlusOne:
    def lessons(self, parallel: bool = False, count: int = 12) -> Trace:
        spans = [span(1, None, 0, 80, "course-service", "GET /courses/7/lessons")]
        for i in range(count):
            start = 5 if parallel else 5 + i * 6
            spans.append(span(i + 2, 1, start, start + 5, "course-service", "SELECT lessons", kind="client",
                              attributes={"db.statement": f"SELECT * FROM lessons WHERE course_id = {i} AND title = 'x{i}'"}))
        return Trace("1" * 32, tuple(spans))

    def test_sequential_same_statement_is_n_plus_one(self) -> None:
        (finding,) = kinds(self.lessons())["n_plus_one"]
        assert finding.evidence["count"] == 12 and finding.evidence["total_ms"] == 60.0
        assert finding.evidence["saved_ms"] == 55.0
        assert finding.evidence["statement"] == "SELECT * FROM lessons WHERE course_id = ? AND title = ?"
        assert "12 × SELECT * FROM lessons" in finding.message

    def test_a_parallel_fan_out_is_not_n_plus_one(self) -> None:
        found = kinds(self.lessons(parallel=True))
        assert "n_plus_one" not in found
        assert found["fan_out"][0].evidence["parallelism"] >= 1.5

    def test_a_short_loop_under_the_count_is_not_flagged(self) -> None:
        assert "n_plus_one" not in kinds(self.lessons(count=4))

    def test_statement_normalisation(self) -> None:
        assert normalise_statement("SELECT a FROM t WHERE id IN (1, 2, 3) AND n = 'o''k'") == "SELECT a FROM t WHERE id IN (?) AND n = ?"


class TestGaps:
    def test_uncovered_parent_time(self) -> None:
        trace = Trace("1" * 32, (span(1, None, 0, 100), span(2, 1, 0, 20), span(3, 1, 60, 100)))
        (gap,) = kinds(trace)["gap"]
        assert gap.evidence["gap_ms"] == 40.0 and gap.evidence["offset_ms"] == 20.0
        assert gap.evidence["after_span_id"] == f"{2:016x}" and gap.evidence["before_span_id"] == f"{3:016x}"

    def test_client_server_hop_latency(self) -> None:
        """12 ms from client start to server start + 8 ms back = 20 ms on the wire or in a queue."""
        trace = Trace("1" * 32, (span(1, None, 0, 100, "gateway", "GET", kind="server"),
                                 span(2, 1, 0, 100, "gateway", "call auth", kind="client"),
                                 span(3, 2, 12, 92, "auth", "validate", kind="server")))
        hop = [f for f in kinds(trace)["gap"] if "hop" in f.evidence]
        assert hop[0].evidence == {"hop": "gateway → auth", "request_ms": 12.0, "response_ms": 8.0, "clock_skew": False}

    def test_small_gaps_are_ignored(self) -> None:
        trace = Trace("1" * 32, (span(1, None, 0, 100), span(2, 1, 0, 48), span(3, 1, 53, 100)))
        assert "gap" not in kinds(trace)


class TestErrors:
    def test_deepest_error_is_the_root_cause_with_its_exception(self) -> None:
        exception = SpanEvent("exception", T0, {"exception.type": "TimeoutError", "exception.message": "db timeout",
                                                "exception.stacktrace": "Traceback (most recent call last):\n  ..."})
        trace = Trace("1" * 32, (span(1, None, 0, 100, "gateway", status="error"),
                                 span(2, 1, 10, 90, "course", status="error"),
                                 span(3, 2, 20, 80, "course", "SELECT", status="error", status_message="db timeout",
                                      events=(exception,)),
                                 span(4, 2, 81, 85, "course", "cache", attributes={"http.status_code": 200})))
        (error,) = kinds(trace)["error"]
        assert error.span_ids == (f"{3:016x}", f"{2:016x}", f"{1:016x}")
        assert error.evidence["exceptions"] == [{"type": "TimeoutError", "message": "db timeout",
                                                 "stacktrace": ["Traceback (most recent call last):"]}]
        assert "db timeout" in error.message and error.severity.value == "critical"

    def test_http_500_counts_as_error(self) -> None:
        trace = Trace("1" * 32, (span(1, None, 0, 10, attributes={"http.response.status_code": 503}),))
        assert kinds(trace)["error"][0].span_ids == (f"{1:016x}",)

    def test_error_logs_are_evidence(self) -> None:
        from correlator.model import LogLine

        trace = Trace("1" * 32, (span(1, None, 0, 10, status="error"),))
        logs = {f"{1:016x}": [LogLine("l", T0, "connection reset", level="error")]}
        (error,) = [f for f in analyse(build_tree(trace), S, logs).findings if f.kind == "error"]
        assert error.evidence["error_logs"][0]["line"] == "connection reset"


class TestLongSpans:
    def test_far_above_its_operations_median(self) -> None:
        spans = [span(1, None, 0, 200)] + [span(i, 1, i * 10, i * 10 + 5, op="GET /x") for i in range(2, 6)]
        spans.append(span(9, 1, 100, 160, op="GET /x"))
        (long_span,) = kinds(Trace("1" * 32, tuple(spans)))["long_span"]
        assert long_span.span_ids == (f"{9:016x}",) and long_span.evidence["median_ms"] == 5.0


class TestFanOut:
    def test_parallel_children_are_good(self) -> None:
        trace = Trace("1" * 32, (span(1, None, 0, 50, "dash"), span(2, 1, 1, 45, "a"), span(3, 1, 2, 46, "b"), span(4, 1, 1, 44, "c")))
        (fan,) = kinds(trace)["fan_out"]
        assert fan.severity.value == "info" and fan.evidence["parallelism"] > 2.5 and "good" in fan.message


class TestRobustness:
    def test_children_outliving_and_preceding_their_parent_do_not_crash(self) -> None:
        trace = Trace("1" * 32, (span(1, None, 10, 100), span(2, 1, 0, 150), span(3, 1, 95, 300)))
        path, held = critical_path(build_tree(trace))
        assert path[0] == f"{1:016x}" and sum(held.values()) <= 90 * MS

    def test_deep_trace_has_no_recursion_limit(self) -> None:
        spans = tuple(span(i + 1, i or None, i, 10_000 - i) for i in range(5000))
        result = analyse(build_tree(Trace("1" * 32, spans)), S)
        assert len(result.critical_path) == 5000

    def test_ten_thousand_spans(self) -> None:
        spans = [span(1, None, 0, 20_000)] + [span(i, 1 + (i - 2) // 50, (i % 50) * 10, (i % 50) * 10 + 8, op="q")
                                               for i in range(2, 10_001)]
        result = analyse(build_tree(Trace("1" * 32, tuple(spans))), S)
        assert result.critical_path[0] == f"{1:016x}"


@given(span_trees())
def test_critical_path_properties(trace: Trace) -> None:
    """The path starts at a root; its sections never overlap and add up to at most the trace."""
    tree = build_tree(trace)
    path, held = critical_path(tree)
    assert path[0] in tree.roots
    assert all(v >= 0 for v in held.values())
    assert sum(held.values()) <= tree.end_ns - tree.start_ns
    assert set(path) == set(held) and len(path) == len(set(path))
    # each next span on the path is a descendant of an earlier one (a chain down from the root)
    for sid in path[1:]:
        assert tree.by_id[sid].parent_span_id in path


@given(span_trees())
def test_self_times_are_bounded(trace: Trace) -> None:
    """Self time is ≥ 0 and ≤ the span's own duration; so their sum never exceeds the total."""
    tree = build_tree(trace)
    assert all(0 <= tree.self_ns[sid] <= span.duration_ns for sid, span in tree.by_id.items())
    assert sum(tree.self_ns.values()) <= sum(span.duration_ns for span in tree.by_id.values())


@given(span_trees(malformed=True))
def test_malformed_trees_are_reported_not_raised(trace: Trace) -> None:
    tree = build_tree(trace)
    result = analyse(tree, S)
    assert all(sid in tree.by_id for f in result.findings for sid in f.span_ids)
    malformed = [f for f in result.findings if f.kind == "malformed"]
    assert len(malformed) == len(tree.problems)
    assert len(tree.depth) == len(tree.by_id)  # every span placed, cycles broken


def test_a_real_jaeger_trace_end_to_end() -> None:
    """Jaeger's own v3 snapshot (one erroring server span) analyses without surprises."""
    body = json.loads((FIXTURES / "upstream/jaeger/api_v3_GetTrace.snapshot.json").read_text())
    trace = parse_otlp_trace(body["result"], "00000000000000000000000000000001")
    result = analyse(build_tree(trace), S)
    assert result.critical_path == ("0000000000000002",)
    assert [f.kind for f in result.findings] == ["error"]


def test_thresholds_come_from_config() -> None:
    strict = replace(S, bottleneck_share=0.6)
    assert not [f for f in analyse(build_tree(seed_trace()), strict).findings if f.kind == "bottleneck"]

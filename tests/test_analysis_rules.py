"""Issue 11: the rules a person applies at a glance to real traces, one built trace per rule.

Same-target comparisons, span events as evidence (waits named), retries, recovered vs
propagated errors, capped concurrency, one finding per problem, and the tree that shows it.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from correlator.analysis import analyse, label, operation_key
from correlator.config import AnalysisSettings
from correlator.model import Finding, LogLine, Span, SpanEvent, Trace
from correlator.sources.jaeger import parse_otlp_trace, parse_ui_trace
from correlator.spantree import build_tree
from correlator.text_tree import render_tree
from tests.conftest import FIXTURES
from tests.test_analysis import MS, T0, sid, span, trace

S = AnalysisSettings()
JAEGER = FIXTURES / "upstream" / "jaeger"


def findings(t: Trace, logs: dict[str, list[LogLine]] | None = None, **settings: Any) -> list[Finding]:
    from dataclasses import replace
    return list(analyse(build_tree(t), replace(S, **settings), logs).findings)


def of_kind(t: Trace, kind: str, **settings: Any) -> list[Finding]:
    return [f for f in findings(t, **settings) if f.kind == kind]


def draw(t: Trace) -> str:
    tree = build_tree(t)
    return render_tree(tree, analyse(tree, S))


def http_get(n: int, parent: int, start: float, end: float, path: str, **kw: Any) -> Span:
    """A client `HTTP GET` span to http://route:8083{path}?… — the name says nothing about the endpoint."""
    attrs = {"http.request.method": "GET", "url.full": f"http://route:8083{path}?pickup=1,2&n={n}", **kw.pop("attributes", {})}
    return Span(sid(n), sid(parent), "frontend", "HTTP GET", T0 + int(start * MS), T0 + int(end * MS), kind="client",
                attributes=attrs, **kw)


def pool_of(width: int, durations: list[int], first: float = 0.0) -> list[tuple[float, float]]:
    """(start, end) of calls run by a worker pool of `width`: each call takes the first free slot."""
    free = [first] * width
    out = []
    for d in durations:
        slot = min(range(width), key=free.__getitem__)
        out.append((free[slot], free[slot] + d))
        free[slot] += d
    return out


ROUTES = [40, 60, 38, 72, 50, 45, 66, 41, 55, 39]


class TestOperationIdentity:
    def test_the_target_comes_from_route_path_peer_rpc_statement_or_destination(self) -> None:
        """One name, many targets: each attribute family names what the span calls."""
        def key(**attrs: Any) -> str:
            return operation_key(Span(sid(1), None, "svc", "call", T0, T0 + MS, kind="client", attributes=attrs))[2]
        assert key(**{"http.route": "/users/{id}"}) == "/users/{id}"
        assert key(**{"url.full": "http://api/users/42?x=1"}) == "/users/{id}"
        assert key(**{"url.path": "/users/43"}) == "/users/{id}"
        assert key(**{"peer.service": "redis", "url.path": "/x"}) == "redis /x"
        assert key(**{"server.address": "10.0.0.7"}) == "10.0.0.7"
        assert key(**{"rpc.service": "driver.Driver", "rpc.method": "FindNearest"}) == "driver.Driver/FindNearest"
        assert key(**{"db.statement": "SELECT * FROM t WHERE id = 7"}) == "SELECT * FROM t WHERE id = ?"
        assert key(**{"messaging.destination.name": "orders"}) == "orders"
        assert key() == ""

    def test_two_endpoints_behind_one_span_name_are_not_compared(self) -> None:
        """A 2.9 s `HTTP GET` to /customer is not "46× the median" of ten 60 ms calls to /route."""
        spans = [Span(sid(1), None, "frontend", "HTTP GET /dispatch", T0, T0 + 3500 * MS, kind="server"),
                 http_get(2, 1, 0, 2900, "/customer")]
        spans += [http_get(3 + i, 1, 2900 + i * 60, 2960 + i * 60, "/route") for i in range(10)]
        result = findings(trace(*spans))
        assert not [f for f in result if "median" in f.message]
        (bottleneck,) = [f for f in result if f.kind == "bottleneck"]
        assert bottleneck.message.startswith("frontend: HTTP GET → /customer (2900ms) is 83% of the trace")
        assert label(spans[2]) == "frontend: HTTP GET → route /route" or label(spans[2]) == "frontend: HTTP GET → /route"

    def test_a_slow_call_is_measured_against_its_own_endpoint(self) -> None:
        """Among calls to /route one of 300 ms stands out; the /customer calls beside it do not dilute the median."""
        spans = [Span(sid(1), None, "frontend", "HTTP GET /dispatch", T0, T0 + 2000 * MS, kind="server")]
        spans += [http_get(2 + i, 1, i * 100, i * 100 + 50, "/route") for i in range(3)]
        spans += [http_get(5 + i, 1, 300 + i * 250, 300 + i * 250 + 200, "/customer") for i in range(3)]
        spans.append(http_get(9, 1, 1100, 1400, "/route"))
        (long_span,) = of_kind(trace(*spans), "long_span", bottleneck_share=0.9)
        assert long_span.span_ids == (sid(9),)
        assert long_span.message == ("frontend: HTTP GET → /route took 300ms — 6.0× the median 50ms "
                                     "of its 4 HTTP GET → /route spans")


def lock_trace() -> Trace:
    """A driver query that waited behind 9 transactions; its events arrive out of order from Jaeger."""
    acquired = SpanEvent("Acquired lock with 0 transactions waiting behind", T0 + 2870 * MS)
    waiting = SpanEvent("Waiting for lock behind 9 transactions", T0 + 12 * MS, {"blockers": "[1 2 3]"})
    return trace(Span(sid(1), None, "customer", "HTTP GET /customer", T0, T0 + 2900 * MS, kind="server"),
                 Span(sid(2), sid(1), "mysql", "SQL SELECT", T0 + 10 * MS, T0 + 2872 * MS, kind="client",
                      attributes={"db.statement": "select * from customer where customer_id=392"},
                      events=(waiting, acquired)))


class TestSpanEvents:
    def test_a_lock_wait_in_the_events_is_named_in_the_finding(self) -> None:
        """The slow query did not run slowly: it waited for a lock, and the finding quotes the event."""
        result = findings(lock_trace())
        (bottleneck,) = [f for f in result if f.kind == "bottleneck"]
        assert bottleneck.message == ("mysql: SQL SELECT → select * from customer where customer_id=? (2862ms) is 99% of the "
                                      "trace — the bottleneck — waited for a lock ('Waiting for lock behind 9 transactions')")
        assert bottleneck.evidence["waited_for"] == "a lock"
        assert [q["text"] for q in bottleneck.evidence["quotes"]] == [
            "Waiting for lock behind 9 transactions", "Acquired lock with 0 transactions waiting behind"]
        assert [f.kind for f in result].count("long_span") == 0  # folded into the bottleneck, not told twice
        assert bottleneck.evidence["long_span"]["rule"] == "absolute"

    def test_a_wait_told_by_a_log_line_counts_too(self) -> None:
        """No events, but the line the join placed on the span says it queued for a connection."""
        t = trace(span(1, None, 0, 1500, "api", "GET /x"), span(2, 1, 10, 1490, "api", "checkout"))
        line = "waiting for a free connection in pool 'main' (10/10 in use)"
        logs = {sid(2): [LogLine("l1", T0 + 20 * MS, line)]}
        (bottleneck,) = [f for f in findings(t, logs) if f.kind == "bottleneck"]
        assert f"waited for a connection pool ('{line}')" in bottleneck.message
        assert bottleneck.evidence["quotes"][0]["source"] == "log"

    def test_a_slow_span_without_wait_words_is_just_slow(self) -> None:
        t = trace(span(1, None, 0, 1500, "api", "GET /x"), span(2, 1, 10, 1490, "api", "render",
                                                                events=(SpanEvent("template compiled", T0 + 30 * MS),)))
        (bottleneck,) = [f for f in findings(t) if f.kind == "bottleneck"]
        assert "waited" not in bottleneck.message and bottleneck.evidence["quotes"][0]["text"] == "template compiled"

    def test_the_tree_shows_events_in_time_order_under_their_span(self) -> None:
        parsed = parse_ui_trace(ui_model(lock_trace()))  # through the Jaeger UI-model parser: logs → events, sorted
        text = draw(parsed)
        assert ("│   └── ● +10ms mysql: SQL SELECT → select * from customer where customer_id=? (2862ms) ← Bottleneck!\n"
                "│       · +12ms Waiting for lock behind 9 transactions\n"
                "│       · +2870ms Acquired lock with 0 transactions waiting behind") in text


def ui_model(t: Trace) -> dict[str, Any]:
    """The trace as Jaeger's UI model serves it, span logs in reverse order (Jaeger does not sort them)."""
    def tags(attrs: Any) -> list[dict[str, Any]]:
        return [{"key": k, "type": "string", "value": v} for k, v in attrs.items()]
    return {"traceID": "1" * 32, "processes": {s.service: {"serviceName": s.service} for s in t.spans}, "spans": [
        {"traceID": "1" * 32, "spanID": s.span_id, "operationName": s.operation, "processID": s.service,
         "references": [{"refType": "CHILD_OF", "traceID": "1" * 32, "spanID": s.parent_span_id}] if s.parent_span_id else [],
         "startTime": s.start_ns // 1000, "duration": s.duration_ns // 1000,
         "tags": [*tags(s.attributes), {"key": "span.kind", "type": "string", "value": s.kind}],
         "logs": [{"timestamp": e.time_ns // 1000, "fields": [{"key": "event", "type": "string", "value": e.name},
                                                              *tags(e.attributes)]} for e in reversed(s.events)]}
        for s in t.spans]}


def driver_trace(retry_by_args: bool = True) -> Trace:
    """FindNearest: 12 sequential redis GetDriver calls — 10 drivers, 2 of them timed out and were retried."""
    spans = [Span(sid(1), None, "driver", "FindNearest", T0, T0 + 400 * MS, kind="server")]
    parent_events = []
    drivers = ["T751", "T752", "T753", "T754", "T754", "T755", "T756", "T757", "T757", "T758", "T759", "T760"]
    failed = {3, 7}
    cursor = 10
    for i, driver in enumerate(drivers):
        took = 100 if i in failed else 15
        timeout = SpanEvent("exception", T0 + (cursor + took) * MS, {"exception.type": "TimeoutError",
                                                                      "exception.message": "redis timeout"})
        attrs = {"param.driverID": driver} if retry_by_args else {"param.attempt": str(i)}
        spans.append(Span(sid(2 + i), sid(1), "redis", "GetDriver", T0 + cursor * MS, T0 + (cursor + took) * MS,
                          kind="client", status="error" if i in failed else "unset",
                          status_message="An error occurred" if i in failed else None, attributes=attrs,
                          events=(timeout,) if i in failed else ()))
        if i in failed:
            parent_events.append(SpanEvent("Retrying GetDriver after error", T0 + (cursor + took + 1) * MS,
                                           {"retry_no": "1", "error": "redis timeout"}))
        cursor += took + 2
    spans[0] = Span(sid(1), None, "driver", "FindNearest", T0, T0 + 400 * MS, kind="server", events=tuple(parent_events))
    return trace(*spans)


class TestRetries:
    def test_failed_call_then_same_key_attribute_is_a_retry(self) -> None:
        """The N+1 counts drivers and retries apart: 10 calls + 2 retries after timeouts."""
        (loop,) = of_kind(driver_trace(), "n_plus_one")
        assert loop.message.startswith("10 × GetDriver + 2 retries after timeouts (")
        assert loop.evidence["retries"] == 2 and loop.evidence["retry_span_ids"] == [sid(6), sid(10)]
        assert loop.evidence["failed_span_ids"] == [sid(5), sid(9)]

    def test_an_event_calling_it_a_retry_is_enough(self) -> None:
        """No shared key attribute, but the parent logged "Retrying GetDriver after error" between the calls."""
        (loop,) = of_kind(driver_trace(retry_by_args=False), "n_plus_one")
        assert loop.evidence["retries"] == 2

    def test_a_failure_followed_by_a_different_call_is_no_retry(self) -> None:
        t = trace(span(1, None, 0, 100, "svc", "job"),
                  span(2, 1, 0, 10, "svc", "get", status="error", attributes={"key": "a"}),
                  span(3, 1, 12, 20, "svc", "get", attributes={"key": "b"}))
        (error,) = of_kind(t, "error")
        assert "retried" not in error.message and error.evidence["retried_by"] == {}

    def test_timed_out_calls_in_the_loop_are_not_long_spans_too(self) -> None:
        """The 100 ms timeouts sit among 15 ms calls: evidence of the loop, not separate findings."""
        result = findings(driver_trace())
        assert not [f for f in result if f.kind == "long_span"]
        (loop,) = [f for f in result if f.kind == "n_plus_one"]
        assert loop.evidence["slow_span_ids"] == [sid(5), sid(9)]


class TestRecoveredErrors:
    def test_retried_timeouts_are_one_grouped_warning_not_a_critical_root_cause(self) -> None:
        """The request returned fine: 2 GetDriver timeouts, retried successfully — a warning, with the exception's words."""
        (error,) = of_kind(driver_trace(), "error")
        assert error.severity.value == "warning"
        assert error.message == "2 × redis: GetDriver timed out — recovered, each retried successfully"
        assert error.span_ids == (sid(5), sid(9))
        assert error.evidence["messages"] == ["redis timeout"]  # not the generic "An error occurred"
        assert error.evidence["retried_by"] == {sid(5): sid(6), sid(9): sid(10)}
        assert {q["text"] for q in error.evidence["quotes"]} == {"exception: redis timeout"}

    def test_an_error_that_reaches_the_root_is_the_critical_root_cause(self) -> None:
        """The same timeout, not retried, failing FindNearest: critical, named by its exception message."""
        t = trace(Span(sid(1), None, "driver", "FindNearest", T0, T0 + 200 * MS, kind="server", status="error"),
                  Span(sid(2), sid(1), "redis", "GetDriver", T0 + 10 * MS, T0 + 110 * MS, kind="client", status="error",
                       status_message="An error occurred",
                       events=(SpanEvent("exception", T0 + 110 * MS, {"exception.message": "redis timeout"}),)))
        (error,) = of_kind(t, "error")
        assert error.severity.value == "critical"
        assert error.message == "redis: GetDriver failed: redis timeout — root cause — propagated through 1 parent span(s)"

    def test_a_failed_entry_span_below_a_healthy_root_is_still_a_root_cause(self) -> None:
        """An error that made a service answer 500 is critical, even if its caller went on."""
        t = trace(span(1, None, 0, 100, "web", "GET /", kind="server"),
                  span(2, 1, 10, 50, "web", "call api", kind="client", status="error"),
                  span(3, 2, 12, 48, "api", "GET /api", kind="server", status="error"),
                  span(4, 3, 14, 40, "api", "SELECT", kind="client", status="error", status_message="deadlock"))
        (error,) = of_kind(t, "error")
        assert error.severity.value == "critical" and error.span_ids == (sid(4), sid(3), sid(2))

    def test_a_failure_nobody_above_saw_is_recovered(self) -> None:
        t = trace(span(1, None, 0, 100, "web", "GET /", kind="server"),
                  span(2, 1, 10, 20, "web", "cache get", kind="client", status="error",
                       status_message="miss: connection refused"))
        (error,) = of_kind(t, "error")
        assert error.severity.value == "warning"
        assert error.message == "web: cache get failed: miss: connection refused — recovered, the request carried on"


def pool_trace(extra_sequential: bool = False) -> Trace:
    """10 calls to /route through a worker pool of 3, optionally after two unrelated sequential calls."""
    offset = 0.0
    spans = [Span(sid(1), None, "frontend", "HTTP GET /dispatch", T0, T0 + 400 * MS, kind="server")]
    if extra_sequential:
        spans += [http_get(40, 1, 1, 30, "/customer"), http_get(41, 1, 31, 60, "/driver")]
        offset = 62.0
    spans += [http_get(2 + i, 1, offset + a, offset + b, "/route") for i, (a, b) in enumerate(pool_of(3, ROUTES))]
    return trace(*spans)


class TestCappedConcurrency:
    def test_a_pool_of_three_is_reported_with_waves_and_saving(self) -> None:
        """10 calls never more than 3 at a time, each starting as another ends: a warning with the cost."""
        (pool,) = [f for f in of_kind(pool_trace(), "fan_out") if f.severity.value == "warning"]
        assert pool.message == ("10 calls to /route run at most 3 at a time (4 waves, 185ms); unbounded ~72ms — "
                                "a pool or limit of 3 costs ~113ms on the critical path")
        assert pool.evidence["max_concurrent"] == 3 and pool.evidence["waves"] == 4
        assert pool.impact_ns == 113 * MS

    def test_parallelism_is_measured_per_same_target_group(self) -> None:
        """Two unrelated sequential calls beside the pool do not turn it into "parallel — good"."""
        fan = of_kind(pool_trace(extra_sequential=True), "fan_out")
        assert [f.severity.value for f in fan] == ["warning"]
        assert fan[0].evidence["calls"] == 10

    def test_unbounded_parallel_calls_are_good_not_capped(self) -> None:
        spans = [Span(sid(1), None, "frontend", "HTTP GET /dispatch", T0, T0 + 100 * MS, kind="server")]
        spans += [http_get(2 + i, 1, 1 + i * 0.1, 1 + i * 0.1 + d, "/route") for i, d in enumerate(ROUTES)]
        (fan,) = of_kind(trace(*spans), "fan_out")
        assert fan.severity.value == "info" and fan.message.endswith("— good")
        assert "calls to /route in parallel" in fan.message

    def test_the_tree_collapses_the_pool_into_one_line(self) -> None:
        lines = draw(pool_trace()).splitlines()
        assert lines[1:] == [
            "├── ● +0ms frontend: HTTP GET /dispatch (400ms) ← Bottleneck!",
            "│   └── ● +0ms × 10 HTTP GET → /route (38–72ms, 3 at a time, 4 waves, 185ms) ← capped at 3",
            "└── Response (total: 400ms)"]

    def test_a_run_of_same_target_siblings_collapses_even_without_a_finding(self) -> None:
        """Four parallel calls to one endpoint are one line; a call elsewhere stays its own line."""
        spans = [span(1, None, 0, 100, "web", "GET /")] + [http_get(2 + i, 1, 1, 20 + i, "/route") for i in range(4)]
        spans.append(http_get(9, 1, 30, 40, "/customer"))
        lines = draw(trace(*spans)).splitlines()
        assert lines[2:4] == ["│   ├── ● +1.0ms × 4 HTTP GET → /route (19–22ms, all at once, 22ms)",
                              "│   └── ● +30ms frontend: HTTP GET → /customer (10ms)"]


class TestJaegerFixturesWithEvents:
    def test_otlp_events_without_a_name_draw_as_their_attributes(self) -> None:
        body = json.loads((JAEGER / "log_tags_trace.otlp_tracesdata.json").read_text())
        t = parse_otlp_trace(body, "00000000000000000000000000000002")
        text = draw(t)
        attrs = "sameplacetag1=sameplacevalue, sameplacetag2=123, sameplacetag4=True, sameplacetag3=72.5, blob="
        assert f"\n│   · +0ms {attrs}" in text
        assert "\n│   · +0ms (unnamed event)\n" in text

    def test_ui_model_logs_become_events_on_their_span_and_in_the_json(self) -> None:
        t = parse_ui_trace(json.loads((JAEGER / "ui_01.ui_model_trace.json").read_text()))
        text = draw(t)
        assert "│   · +0ms some-event\n" in text and "│   · +0ms x=y\n" in text
        body = TestReportLinks().body(t, {})
        first = next(s for s in body["spans"] if s["span_id"] == sid(2))
        assert [e["name"] for e in first["events"]] == ["some-event", ""]
        assert first["events"][1]["attributes"] == {"x": "y"} and first["events"][1]["offset_ms"] == 0.0

    def test_each_span_in_the_json_names_its_target(self) -> None:
        """The page folds and compares by the same identity the analysis uses: the body's `target`."""
        body = TestReportLinks().body(pool_trace(), {})
        targets = {s["span_id"]: s["target"] for s in body["spans"]}
        assert targets[sid(1)] is None and targets[sid(2)] == "/route"


class TestReportLinks:
    def outcome(self, t: Trace) -> Any:
        from correlator.correlate import Outcome
        from correlator.model import Correlation, SourceReport, SourceStatus, Window

        tree = build_tree(t)
        result = analyse(tree, S)
        correlation = Correlation(t.trace_id, Window(T0, T0 + 400 * MS), t, (), (), (), (), result.critical_path,
                                  result.findings, {"jaeger": SourceReport(SourceStatus.OK, 1.0, len(t.spans))})
        return Outcome(correlation, tree)

    def body(self, t: Trace, environ: dict[str, str]) -> dict[str, Any]:
        from correlator.config import load_settings
        from correlator.render import correlation_body

        return correlation_body(self.outcome(t), load_settings(environ=environ))

    def report(self, environ: dict[str, str]) -> str:
        from correlator.report import render_text

        t = pool_trace()
        return render_text(self.outcome(t), self.body(t, environ))

    def test_no_link_lines_to_unconfigured_localhost_defaults(self) -> None:
        text = self.report({})
        assert "Jaeger:" not in text and "Grafana:" not in text
        assert "[warning] 10 calls to /route run at most 3 at a time" in text and text.count("run at most 3") == 1

    def test_configured_uis_get_their_link_lines(self) -> None:
        text = self.report({"CORRELATOR_JAEGER_UI_URL": "https://jaeger.example.com",
                            "CORRELATOR_GRAFANA_URL": "https://grafana.example.com"})
        assert f"Jaeger:  https://jaeger.example.com/trace/{'1' * 32}" in text
        assert "Grafana: https://grafana.example.com/explore?" in text


class TestCollapsingKeepsWhatMatters:
    def calls(self, slow_server: bool = False) -> Trace:
        """4 parallel client calls to /route, each answered by a route server span."""
        spans = [span(1, None, 0, 400, "frontend", "GET /dispatch", kind="server")]
        for i in range(4):
            end = 300 if slow_server and i == 2 else 38 + i
            spans.append(http_get(2 + i, 1, 1, end + 2, "/route"))
            spans.append(span(10 + i, 2 + i, 2, end, "route", "GET /route", kind="server"))
        return trace(*spans)

    def test_a_run_of_calls_with_their_servers_folds_and_counts_what_it_holds(self) -> None:
        lines = draw(self.calls()).splitlines()
        assert lines[2] == "│   └── ● +1.0ms × 4 HTTP GET → /route (39–42ms, all at once, 42ms) +4 nested spans"
        assert len(lines) == 4

    def test_a_run_hiding_the_bottleneck_is_drawn_in_full(self) -> None:
        """One server span is the bottleneck: the calls stay expanded so its mark is seen."""
        text = draw(self.calls(slow_server=True))
        assert "route: GET /route (298ms) ← Bottleneck!" in text and "× 4" not in text


class TestGapsNameTheirWait:
    def test_a_gap_whose_span_logged_a_wait_says_so(self) -> None:
        """40 ms no child covers, and the span's event in that time says it queued: the gap names the queue."""
        t = trace(span(1, None, 0, 100, "api", "POST /orders", events=(
                      SpanEvent("request accepted", T0 + 1 * MS),
                      SpanEvent("queued behind 12 jobs in the 'orders' worker queue", T0 + 25 * MS))),
                  span(2, 1, 0, 20, "api", "validate"), span(3, 1, 60, 100, "api", "store"))
        (gap,) = of_kind(t, "gap")
        assert gap.message.endswith("— waited for a queue ('queued behind 12 jobs in the 'orders' worker queue')")
        assert gap.evidence["waited_for"] == "a queue"

    def test_an_event_outside_the_gap_is_not_its_explanation(self) -> None:
        t = trace(span(1, None, 0, 100, "api", "POST /orders", events=(SpanEvent("lock acquired", T0 + 80 * MS),)),
                  span(2, 1, 0, 20, "api", "validate"), span(3, 1, 60, 100, "api", "store"))
        (gap,) = of_kind(t, "gap")
        assert gap.message.endswith("— uninstrumented work or waiting")


# ------------------------------------------------------------------------------ properties

_ATTRIBUTE_POOL: list[dict[str, Any]] = [
    {}, {"http.route": "/route"}, {"url.full": "http://route:8083/route?x=1"}, {"url.full": "http://[bad"},
    {"url.path": "/users/42"}, {"peer.service": "redis"}, {"server.address": "10.0.0.1"},
    {"rpc.service": "Driver", "rpc.method": "Find"}, {"rpc.method": 7}, {"db.statement": "SELECT 1 WHERE id = 3"},
    {"messaging.destination.name": "orders"}, {"param.driverID": "T7"}, {"http.status_code": 503},
    {"db.statement": ""}, {"peer.service": ["not", "a", "string"]},
]
_EVENT_TEXTS = ["Waiting for lock behind 9 transactions", "Retrying GetDriver after error", "queued", "", "done",
                "rate limited by upstream", "exception"]


@st.composite
def target_rich_traces(draw: st.DrawFn) -> tuple[Trace, dict[str, list[LogLine]]]:
    """Siblings that share names but not targets, failures and retries, events and log lines that talk."""
    n = draw(st.integers(1, 30))
    spans, logs = [], {}
    for i in range(n):
        start = draw(st.integers(0, 2000))
        events = tuple(SpanEvent(draw(st.sampled_from(_EVENT_TEXTS)), T0 + (start + draw(st.integers(-5, 50))) * MS,
                                 draw(st.sampled_from([{}, {"exception.message": "redis timeout"}, {"n": 1.5}])))
                       for _ in range(draw(st.integers(0, 3))))
        spans.append(Span(sid(i + 1), sid(draw(st.integers(1, i))) if i else None, draw(st.sampled_from(["a", "b"])),
                          draw(st.sampled_from(["HTTP GET", "GetDriver", "SELECT"])), T0 + start * MS,
                          T0 + (start + draw(st.integers(0, 400))) * MS,
                          kind=draw(st.sampled_from(["server", "client", "internal", "producer"])),
                          status=draw(st.sampled_from(["ok", "unset", "error"])),
                          status_message=draw(st.sampled_from([None, "An error occurred", "timeout"])),
                          attributes=draw(st.sampled_from(_ATTRIBUTE_POOL)), events=events))
        if draw(st.booleans()):
            logs[sid(i + 1)] = [LogLine(f"l{i}", T0 + start * MS, draw(st.sampled_from(_EVENT_TEXTS)), level="error")]
    return Trace("1" * 32, tuple(spans)), logs


@given(target_rich_traces())
def test_every_rule_reads_any_trace_without_tripping(case: tuple[Trace, dict[str, list[LogLine]]]) -> None:
    """No detector fails, every finding names real spans, evidence is JSON, the tree draws every root."""
    t, logs = case
    tree = build_tree(t)
    result = analyse(tree, S, logs)
    assert not [f for f in result.findings if "could not read" in f.message]
    assert all(s in tree.by_id for f in result.findings for s in f.span_ids)
    json.dumps([f.evidence for f in result.findings])
    text = render_tree(tree, result)
    assert text.endswith(")") and text.count("\n├── ") + text.count("\n└── ") >= 2
    critical = [f for f in result.findings if f.kind == "error" and f.severity.value == "critical"]
    for finding in critical:  # a root cause reached the root or a failed entry span
        chain = [tree.by_id[s] for s in finding.span_ids]
        assert chain[-1].span_id in tree.roots or any(sp.kind == "server" for sp in chain)

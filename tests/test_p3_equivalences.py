"""Cuts for bench P3 that must not change an answer: each pinned to what it replaced."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from correlator.analysis.merge import _with_evidence
from correlator.model import Finding, Severity


def test_with_evidence_keeps_every_other_field() -> None:
    finding = Finding("fan_out", Severity.WARNING, "five calls at once", ("a", "b"), {"x": 1}, impact_ns=7)
    # Every field must differ from its default, so a field added to Finding and forgotten here shows.
    for f in fields(Finding):
        assert getattr(finding, f.name) not in (None, (), {}, 0, ""), f"give {f.name} a non-default value in this test"
    assert _with_evidence(finding, {"quotes": []}) == replace(finding, evidence={"quotes": []})
    assert [f.name for f in fields(Finding)] == ["kind", "severity", "message", "span_ids", "evidence", "impact_ns"]


def test_the_grafana_link_is_urlencode_quoted() -> None:
    from urllib.parse import quote, urlencode

    from correlator.config import load_settings
    from correlator.render import grafana_explore_url

    settings = load_settings(environ={"CORRELATOR_GRAFANA_URL": "https://g.example/sub/", "CORRELATOR_GRAFANA_JAEGER_UID": "jä ger&/=?"})
    url = grafana_explore_url(settings, "4bf92f3577b34da6a3ce929d0e0e4736", 1_795_572_505_053_000_000, 1_795_572_506_000_000_000)
    base, _, query = url.partition("?")
    assert base == "https://g.example/sub/explore"
    panes = '{"trace":{"datasource":"j\\u00e4 ger&/=?","queries":[{"refId":"A","datasource":{"type":"jaeger","uid":"j\\u00e4 ger&/=?"},' \
            '"query":"4bf92f3577b34da6a3ce929d0e0e4736"}],"range":{"from":"1795572445053","to":"1795572566000"}}}'
    assert query == urlencode({"schemaVersion": 1, "panes": panes}, quote_via=quote)


def test_a_series_query_is_the_same_whatever_the_label_order_and_asked_again() -> None:
    import json

    from correlator.model import Exemplar
    from correlator.standing import histogram_query

    def reference(metric: str, series: dict[str, str]) -> str:
        matchers = [f"__name__={json.dumps(metric)}"]
        matchers += [f"{k}={json.dumps(v)}" for k, v in sorted(series.items()) if k not in ("__name__", "le")]
        return f"sum by (le) (increase({{{','.join(matchers)}}}[5m]))"

    series = {"__name__": "x_bucket", "le": "0.5", "service": 'a"b\\ü', "route": "/r"}
    for labels in (series, dict(reversed(series.items())), series):
        ex = Exemplar("e", "x_bucket", labels, {}, 0.1, 1, "t", "s")
        assert histogram_query(ex) == reference("x_bucket", labels)
    assert histogram_query(Exemplar("e", "x_count", {"le": "1"}, {}, 0.1, 1, "t", "s")) is None


_TRACE_HEX = "4bf92f3577b34da6a3ce929d0e0e4736"


def _loki_lines() -> Any:
    from hypothesis import strategies as st

    from correlator.model import LogLine

    texts = st.sampled_from([f"trace_id={_TRACE_HEX} ok", f"x{_TRACE_HEX}9 longer run", "no id here", f"{_TRACE_HEX[:16]}"])
    metadata = st.sampled_from([{}, {"trace_id": _TRACE_HEX}, {"trace_id": "ffff" * 8}, {"trace_id": "not hex"},
                                {"detected_level": "info"}, {"trace_id": _TRACE_HEX.upper(), "span_id": "00f067aa0ba902b7"}])
    line = st.builds(LogLine, id=st.sampled_from(["log-a", "log-b", "log-c"]), timestamp_ns=st.integers(0, 3), line=texts,
                     service=st.sampled_from([None, "svc"]), level=st.sampled_from([None, "info", "error"]),
                     labels=st.sampled_from([{}, {"service_name": "svc"}]), metadata=metadata,
                     span_id=st.sampled_from([None, "00f067aa0ba902b7"]))
    return st.lists(st.lists(line, max_size=6), min_size=1, max_size=3)


def test_loki_fetch_checks_a_copy_once_and_keeps_what_checking_every_line_kept() -> None:
    """`LokiSource.fetch` skips the trace check for a line equal (text and metadata) to one that passed it:
    the lines, their order and their merged fields are those of checking every line (the loop it replaced)."""
    import asyncio

    import httpx
    from hypothesis import given
    from hypothesis import settings as hypothesis_settings

    from correlator.config import LokiSettings
    from correlator.ids import parse_trace_id
    from correlator.model import LogLine, Window
    from correlator.sources.loki import LokiSource, carries_trace, merge_duplicate

    trace_id = parse_trace_id(_TRACE_HEX)
    settings = LokiSettings()

    def reference(answers: list[list[LogLine]]) -> tuple[LogLine, ...]:
        merged: dict[str, LogLine] = {}
        for lines in answers:
            for line in lines:
                if carries_trace(line, trace_id, settings):
                    merged[line.id] = merge_duplicate(merged[line.id], line) if line.id in merged else line
        return tuple(sorted(merged.values(), key=lambda line: (line.timestamp_ns, line.id)))

    @hypothesis_settings(max_examples=200, deadline=None)
    @given(_loki_lines())
    def check(answers: list[list[LogLine]]) -> None:
        source = LokiSource(settings, httpx.AsyncClient())

        async def lookups(*_args: Any) -> tuple[list[tuple[list[LogLine], bool]], list[Any]]:
            return [(lines, False) for lines in answers], []
        source._lookups = lookups  # type: ignore[method-assign, assignment]  # the answers as given: this pins the merge
        got = asyncio.run(source.fetch(trace_id, Window(0, 10), ["svc"])).value
        assert got == reference(answers)
        assert [line.metadata for line in got] == [line.metadata for line in reference(answers)]

    check()


def test_the_untraced_scopes_clock_estimate_is_reused_only_when_it_is_the_trees() -> None:
    """`_assemble` takes the untraced scope's clock estimate instead of computing its own only when equal to it: on any
    trace (several roots, duplicate IDs, inverted times, cycles) the clocks the correlation uses are the tree's."""
    from hypothesis import given
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st

    from correlator.correlate import reused_clock, scope_clock
    from correlator.model import Span, Trace
    from correlator.skew import estimate_clocks
    from correlator.spantree import build_tree

    ids = [f"{i:016x}" for i in range(1, 7)]
    span = st.builds(Span, span_id=st.sampled_from(ids), parent_span_id=st.one_of(st.none(), st.sampled_from(ids)),
                     service=st.sampled_from(["a", "b", "c"]), operation=st.just("op"), start_ns=st.integers(0, 50),
                     end_ns=st.integers(0, 60), kind=st.sampled_from(["server", "client"]))

    @hypothesis_settings(max_examples=300, deadline=None)
    @given(st.lists(span, min_size=1, max_size=7))
    def check(spans: list[Span]) -> None:
        trace = Trace("4bf92f3577b34da6a3ce929d0e0e4736", tuple(spans))
        tree = build_tree(trace)
        reference = tree.by_id[tree.roots[0]].service if tree.roots else None
        fresh = estimate_clocks(list(tree.by_id.values()), reference, tree.by_id)
        reused = reused_clock(scope_clock(trace), tree, reference)
        assert reused is None or reused == fresh

    check()
    # The usual trace (one root, every ID once, times in order) reuses it.
    one = Trace("4bf92f3577b34da6a3ce929d0e0e4736", (Span("a" * 16, None, "gw", "GET", 0, 10, "server"),
                                                     Span("b" * 16, "a" * 16, "api", "GET", 2, 9, "server")))
    assert reused_clock(scope_clock(one), build_tree(one), "gw") is not None
    # Two roots: the scope's reference is the first listed, the tree's the first to start; the skewed server's offset is
    # relative to its caller's clock, so the estimates differ and the tree's is computed.
    two = Trace("4bf92f3577b34da6a3ce929d0e0e4736", (Span("a" * 16, None, "late", "GET", 10_000_000, 20_000_000, "server"),
                                                     Span("b" * 16, None, "early", "GET", 0, 30_000_000, "server"),
                                                     Span("c" * 16, "b" * 16, "skewed", "GET", -10_000_000, 10_000_000, "server")))
    tree = build_tree(two)
    reference = tree.by_id[tree.roots[0]].service
    assert scope_clock(two)[1] == "late" and reference == "early"
    assert scope_clock(two)[2] != estimate_clocks(list(tree.by_id.values()), reference, tree.by_id)
    assert reused_clock(scope_clock(two), tree, reference) is None


def test_the_grafana_link_is_the_json_of_its_pane_whatever_the_settings() -> None:
    """`grafana_explore_url` writes the same link as quoting `json.dumps` of the whole pane (what it replaced)."""
    import json

    from hypothesis import given
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st

    from correlator.config import load_settings
    from correlator.render import grafana_explore_url
    from correlator.sources._http import _quote

    def reference(url: str, uid: str, trace_hex: str, start_ns: int | None, end_ns: int | None) -> str:
        pane: dict[str, Any] = {"datasource": uid, "queries": [{"refId": "A", "datasource": {"type": "jaeger", "uid": uid},
                                                                "query": trace_hex}]}
        if start_ns is not None and end_ns is not None:
            pane["range"] = {"from": str(start_ns // 1_000_000 - 60_000), "to": str(end_ns // 1_000_000 + 60_000)}
        return f"{url.rstrip('/')}/explore?schemaVersion=1&panes={_quote(json.dumps({'trace': pane}, separators=(',', ':')))}"

    texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=8)
    stamps = st.one_of(st.none(), st.integers(-(2**62), 2**62))

    @hypothesis_settings(max_examples=200, deadline=None)
    @given(st.sampled_from(["http://localhost:3000", "https://g.example/sub/", "http://g//"]), texts,
           st.one_of(st.just("4bf92f3577b34da6a3ce929d0e0e4736"), texts), stamps, stamps)
    def check(url: str, uid: str, trace_hex: str, start_ns: int | None, end_ns: int | None) -> None:
        settings = load_settings(environ={"CORRELATOR_GRAFANA_URL": url, "CORRELATOR_GRAFANA_JAEGER_UID": uid or "x"})
        uid = settings.grafana.jaeger_uid
        assert grafana_explore_url(settings, trace_hex, start_ns, end_ns) == reference(url, uid, trace_hex, start_ns, end_ns)

    check()


def _quotes_reference(spans: Any, logs: Any, origin_ns: int) -> list[dict[str, Any]]:
    """`analysis.events.quotes` as it was: a quote made of every item read, then sorted and cut."""
    from correlator.analysis.events import _MAX_QUOTES, _MAX_TEXT, _earliest, event_text

    out: list[tuple[int, dict[str, Any]]] = []
    seen = 0
    for span in spans:
        for event in span.events:
            out.append((event.time_ns, {"span_id": span.span_id, "source": "event",
                                        "offset_ms": round((event.time_ns - origin_ns) / 1e6, 3), "text": event_text(event)}))
        lines = logs.get(span.span_id, ())
        for line in _earliest(lines, _MAX_QUOTES):
            out.append((line.timestamp_ns, {"span_id": span.span_id, "source": "log", "level": line.level,
                                            "offset_ms": round((line.timestamp_ns - origin_ns) / 1e6, 3),
                                            "text": line.line[:_MAX_TEXT]}))
        seen += len(span.events) + len(lines)
        if seen >= 4 * _MAX_QUOTES:
            break
    out.sort(key=lambda pair: pair[0])
    return [quote for _t, quote in out[:_MAX_QUOTES]]


def test_a_findings_quotes_are_those_of_quoting_every_item_then_keeping_the_first() -> None:
    """`quotes` makes a quote only of the items that are kept: the same quotes, in the same order (ties included)."""
    from hypothesis import given
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st

    from correlator.analysis.events import quotes
    from correlator.model import LogLine, Span, SpanEvent

    times = st.integers(0, 4)
    event = st.builds(SpanEvent, name=st.sampled_from(["", "retry", "wait"]), time_ns=times,
                      attributes=st.sampled_from([{}, {"message": "lock held"}, {"k": 1}]))
    span = st.builds(Span, span_id=st.sampled_from([f"{i:016x}" for i in range(1, 6)]), parent_span_id=st.none(),
                     service=st.just("s"), operation=st.just("op"), start_ns=st.just(0), end_ns=st.just(9),
                     events=st.lists(event, max_size=3).map(tuple))
    line = st.builds(LogLine, id=st.text(max_size=3), timestamp_ns=times, line=st.text(max_size=210),
                     level=st.sampled_from([None, "info"]))
    logs = st.dictionaries(st.sampled_from([f"{i:016x}" for i in range(1, 6)]), st.lists(line, max_size=12), max_size=5)

    @hypothesis_settings(max_examples=300, deadline=None)
    @given(st.lists(span, max_size=8), logs, st.integers(-3, 3))
    def check(spans: list[Span], by_span: dict[str, list[LogLine]], origin: int) -> None:
        assert quotes(spans, by_span, origin) == _quotes_reference(spans, by_span, origin)

    check()

"""Join rules: exact span ID → same service inside the span (deepest wins) → trace level."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from correlator.join import join
from correlator.model import Exemplar, LogLine, Match, Span, Trace
from correlator.spantree import build_tree

MS = 1_000_000
T0 = 1_795_572_505_053_254_099


def seed_trace() -> Trace:
    """The seed's GET /api/courses: gateway → auth, course service → db query + cache lookup."""
    return Trace("4bf92f3577b34da6a3ce929d0e0e4736", (
        Span("00f067aa0ba902b7", None, "api-gateway", "GET /api/courses", T0, T0 + 145 * MS, kind="server"),
        Span("eee19b7ec3c1b174", "00f067aa0ba902b7", "auth-service", "validate token", T0 + 5 * MS, T0 + 20 * MS),
        Span("53995c3f42cd8ad8", "00f067aa0ba902b7", "course-service", "GET /courses", T0 + 20 * MS, T0 + 140 * MS),
        Span("b7ad6b7169203331", "53995c3f42cd8ad8", "course-service", "SELECT courses", T0 + 25 * MS, T0 + 105 * MS),
        Span("c5e1a2f2d9d4e821", "53995c3f42cd8ad8", "course-service", "cache lookup", T0 + 106 * MS, T0 + 111 * MS),
    ))


def line(ts: int, service: str | None, span_id: str | None = None, text: str = "x") -> LogLine:
    return LogLine(id=f"{ts}-{text}", timestamp_ns=ts, line=text, service=service, span_id=span_id)


class TestRules:
    def test_exact_span_id_wins_even_outside_the_span_time(self) -> None:
        tree = build_tree(seed_trace())
        places, _ = join(tree, [line(T0 + 999 * MS, "api-gateway", "b7ad6b7169203331")], [], 50)
        assert (places[0].span_id, places[0].match) == ("b7ad6b7169203331", Match.SPAN_ID)

    def test_same_service_inside_the_span_picks_the_deepest(self) -> None:
        """A course-service line written during the DB query belongs to the DB query, not its parent."""
        tree = build_tree(seed_trace())
        places, _ = join(tree, [line(T0 + 50 * MS, "course-service"), line(T0 + 22 * MS, "course-service")], [], 0)
        assert [(p.span_id, p.match) for p in places] == [
            ("b7ad6b7169203331", Match.TIME), ("53995c3f42cd8ad8", Match.TIME)]

    def test_clock_skew_margin_extends_the_span(self) -> None:
        tree = build_tree(seed_trace())
        late = line(T0 + 145 * MS + 30 * MS, "api-gateway")
        assert join(tree, [late], [], 50)[0][0].match is Match.TIME
        assert join(tree, [late], [], 10)[0][0].match is Match.TRACE

    def test_unknown_span_id_and_other_service_fall_back(self) -> None:
        tree = build_tree(seed_trace())
        places, _ = join(tree, [line(T0 + 50 * MS, "billing", "ffffffffffffffff"), line(T0 + 50 * MS, None)], [], 50)
        assert [p.match for p in places] == [Match.TRACE, Match.TRACE]
        assert [p.span_id for p in places] == [None, None]

    def test_exemplar_uses_its_series_service_label(self) -> None:
        tree = build_tree(seed_trace())
        ex = Exemplar("e1", "http_server_duration_seconds_bucket", {"service": "course-service", "le": "0.25"},
                      {"trace_id": "4bf9"}, 0.12, T0 + 139 * MS, "4bf92f3577b34da6a3ce929d0e0e4736")
        _, places = join(tree, [], [ex], 0)
        assert (places[0].span_id, places[0].match) == ("53995c3f42cd8ad8", Match.TIME)

    def test_order_of_input_is_kept(self) -> None:
        tree = build_tree(seed_trace())
        logs = [line(T0 + 130 * MS, "course-service"), line(T0 + 50 * MS, "course-service"), line(T0 + 1 * MS, "api-gateway")]
        places, _ = join(tree, logs, [], 0)
        assert [p.span_id for p in places] == ["53995c3f42cd8ad8", "b7ad6b7169203331", "00f067aa0ba902b7"]


@st.composite
def traces_and_lines(draw: st.DrawFn) -> tuple[Trace, list[LogLine]]:
    n = draw(st.integers(1, 30))
    spans = []
    for i in range(n):
        start = draw(st.integers(0, 1000))
        spans.append(Span(f"{i + 1:016x}", f"{draw(st.integers(1, i)):016x}" if i else None,
                          draw(st.sampled_from(["a", "b", "c"])), "op", start, start + draw(st.integers(0, 500))))
    lines = [line(draw(st.integers(-100, 1600)), draw(st.sampled_from(["a", "b", "c", None])),
                  draw(st.sampled_from([None, f"{draw(st.integers(1, n + 3)):016x}"]))) for _ in range(draw(st.integers(0, 40)))]
    return Trace("1" * 32, tuple(spans)), lines


@given(traces_and_lines(), st.integers(0, 50))
def test_time_rule_matches_a_brute_force_search(data: tuple[Trace, list[LogLine]], skew: int) -> None:
    """The sweep places each line exactly where an exhaustive search over all spans would."""
    trace, lines = data
    tree = build_tree(trace)
    places, _ = join(tree, lines, [], skew / 1_000_000)
    for item, placed in zip(lines, places, strict=True):
        if item.span_id in tree.by_id:
            assert placed.match is Match.SPAN_ID and placed.span_id == item.span_id
            continue
        candidates = [s for s in tree.by_id.values()
                      if s.service == item.service and s.start_ns - skew <= item.timestamp_ns <= s.end_ns + skew]
        if not candidates:
            assert placed.match is Match.TRACE
        else:
            deepest = max(tree.depth[s.span_id] for s in candidates)
            assert placed.match is Match.TIME
            assert tree.depth[placed.span_id] == deepest
            assert placed.span_id in {s.span_id for s in candidates}

"""`join.place` gives what it gave before the lines round (tests/reference/join_v1.py): the same placements for every
item, on random trees (malformed ones too) and items whose span IDs are the trace's, another trace's, missing or
repeated, with services and times that do or do not meet a span, and clock offsets."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from correlator.join import place
from correlator.model import Trace
from correlator.spantree import build_tree
from tests.reference.join_v1 import place as place_v1
from tests.strategies import span_trees


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(span_trees(malformed=True), st.data())
def test_placements_are_the_old_ones(trace: Trace, data: st.DataObject) -> None:
    tree = build_tree(trace)
    ids = [span.span_id for span in trace.spans]
    services = sorted({span.service for span in trace.spans})
    count = data.draw(st.integers(0, 60))
    span_ids = data.draw(st.lists(st.one_of(st.none(), st.sampled_from(ids), st.just("00000000000000ff")), min_size=count,
                                  max_size=count))
    item_services = data.draw(st.lists(st.one_of(st.none(), st.just(""), st.sampled_from(services), st.just("elsewhere")),
                                       min_size=count, max_size=count))
    stamps = data.draw(st.lists(st.integers(-1_000_000, 16_000_000), min_size=count, max_size=count))
    skew = data.draw(st.sampled_from([0, 1000, 50_000]))
    clocks = data.draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(services), st.tuples(
        st.integers(-500_000, 500_000), st.integers(0, 100_000)), max_size=2)))
    new = place(tree, span_ids, item_services, stamps, skew, clocks)
    assert new == place_v1(tree, span_ids, item_services, stamps, skew, clocks)
    assert isinstance(new, tuple)


def test_every_item_placed_by_its_span_id_shares_one_placement_per_span() -> None:
    from correlator.model import Span
    from tests.strategies import _sid

    trace = Trace("1" * 32, (Span(_sid(1), None, "a", "op", 0, 10), Span(_sid(2), _sid(1), "a", "op", 1, 5)))
    placed = place(build_tree(trace), [_sid(2), _sid(1), _sid(2)], ["a", "a", "a"], [1, 2, 3], 0)
    assert [p.span_id for p in placed] == [_sid(2), _sid(1), _sid(2)]
    assert placed[0] is placed[2]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(span_trees(malformed=True), st.data())
def test_join_places_lines_as_before(trace: Trace, data: st.DataObject) -> None:
    """`join` reads a line's service and time only when its span ID does not place it: the same placements."""
    from correlator.join import join
    from correlator.model import LogLine

    tree = build_tree(trace)
    ids = [span.span_id for span in trace.spans]
    services = sorted({span.service for span in trace.spans})
    all_known = data.draw(st.booleans())
    count = data.draw(st.integers(0, 40))
    span_ids = data.draw(st.lists(st.sampled_from(ids) if all_known else st.one_of(st.none(), st.sampled_from(ids),
                                                                                   st.just("00000000000000ff")),
                                  min_size=count, max_size=count))
    lines = tuple(LogLine(f"log-{i}", data.draw(st.integers(-1_000_000, 16_000_000)), "text",
                          data.draw(st.one_of(st.none(), st.sampled_from(services), st.just("elsewhere"))), None, {}, {}, sid)
                  for i, sid in enumerate(span_ids))
    clocks = data.draw(st.one_of(st.none(), st.just({services[0]: (1000, 10)})))
    log_places, _ = join(tree, lines, (), 0.05, clocks)
    assert log_places == place_v1(tree, span_ids, [ln.service for ln in lines], [ln.timestamp_ns for ln in lines], 50_000, clocks)
    assert isinstance(log_places, tuple)

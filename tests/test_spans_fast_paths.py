"""Each shortcut the span side took for speed (issue 14, P2) gives what the plain form gave, on any input.

The 10k-span body comparison (test_spans_identical.py) covers the shapes a trace has; these cover the
corners of each shortcut a trace rarely reaches: ties and signs in the ms rounding, text the statement
regex could read differently, timestamps Decimal must still take, trees with equal starts and cycles.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from hypothesis import given
from hypothesis import strategies as st

from correlator.analysis.identity import _NUMBER
from correlator.render import _ms
from correlator.sources.prometheus import _seconds_to_ns
from correlator.spantree import build_tree, covered_ns
from tests.strategies import span_trees

# The pattern as it was: a lookbehind tried at every position.
_NUMBER_BEFORE = re.compile(r"(?<![\w$])(?:0x[0-9a-fA-F]+|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?!\w)")


@given(st.one_of(st.integers(-10**18, 10**18), st.integers(0, 10**7).map(lambda k: k * 1000 + 500),
                 st.integers(2**52 - 10**6, 2**52 + 10**6)))
def test_ms_is_round_to_three_places(ns: int) -> None:
    expected = round(ns / 1_000_000, 3)
    assert repr(_ms(ns)) == repr(expected)  # repr: -0.0 and 0.0 differ in the body


@given(st.text(alphabet="0x1-9aAfFeE.+$_ \n'\"(),=é٣", max_size=30))
def test_statement_numbers_match_where_they_matched_before(text: str) -> None:
    assert _NUMBER.sub("?", text) == _NUMBER_BEFORE.sub("?", text)


def _seconds_before(raw: object) -> int | None:
    try:
        return int(Decimal(str(raw)) * 1_000_000_000)
    except (InvalidOperation, ValueError, OverflowError):
        return None


@given(st.one_of(st.floats(0, 4e9), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12),
                 st.from_regex(r"\A-?[0-9]{0,12}(\.[0-9]{0,12})?\Z"), st.text(max_size=12)))
def test_exemplar_timestamps_convert_as_decimal_did(raw: object) -> None:
    expected = _seconds_before(raw)
    try:
        got: int | None = _seconds_to_ns(raw)
    except ValueError:
        got = None
    assert got == expected


@given(span_trees(malformed=True))
def test_the_tree_orders_siblings_and_counts_own_time_as_before(trace: object) -> None:
    tree = build_tree(trace)  # type: ignore[arg-type]
    by_id = tree.by_id
    for parent, kids in tree.children.items():
        assert kids == sorted(kids, key=lambda i: (by_id[i].start_ns, -by_id[i].end_ns, i))
        span = by_id[parent]
        covered = covered_ns([(by_id[k].start_ns, by_id[k].end_ns) for k in kids], span.start_ns, span.end_ns)
        assert tree.self_ns[parent] == span.end_ns - span.start_ns - covered
    if by_id:
        assert (tree.start_ns, tree.end_ns) == (min(s.start_ns for s in by_id.values()), max(s.end_ns for s in by_id.values()))
    assert sorted(tree.order) == sorted(by_id)

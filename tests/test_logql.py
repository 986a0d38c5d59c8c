"""LogQL building: exact strings for the recorded queries, and no way to break out of a literal."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from correlator.logql import line_filter_query, metadata_query, quote, regex_escape, stream_selector
from tests.conftest import FIXTURES
from tests.fakes.loki import parse as parse_logql

RECORDED = FIXTURES / "recorded" / "loki"
# A Go double-quoted literal as Loki's lexer reads it: no raw quote, backslash or newline inside.
GO_LITERAL = re.compile(r'"(?:[^"\\\n\r]|\\.)*"')
INJECTIONS = ['"} |= "x', '\\"} or {a=~".+', "a\nb", 'x` |= `y', "\\", '"', "}|json|", "\u2028", "\x00\x1f"]


def recorded_query(name: str) -> str:
    return json.loads((RECORDED / name).read_text())["request"]["params"]["query"]


def test_queries_equal_the_recorded_ones_byte_for_byte() -> None:
    """The queries for the recorded trace are exactly the ones a real Loki 3 answered."""
    selector = stream_selector("service_name", ["course-service", "api-gateway", "auth-service"])
    assert line_filter_query(selector, "4bf92f3577b34da6a3ce929d0e0e4736") == recorded_query("query_range.line_filter.json")
    assert metadata_query(selector, ["4bf92f3577b34da6a3ce929d0e0e4736"]) == recorded_query(
        "query_range.structured_metadata.json")
    legacy = stream_selector("service_name", ["legacy-billing"])
    assert line_filter_query(legacy, "7b4c2d9e1f3a5b6c") == recorded_query("query_range.short_64bit_id.json")


def test_escaped_quote_literal_matches_the_recording() -> None:
    """A quote in a needle is written `\\"`, as in the request Loki accepted."""
    selector = stream_selector("service_name", ["api-gateway", "auth-service", "course-service"])
    assert line_filter_query(selector, 'a"b') == recorded_query("query_range.escaped_quote_literal.json")


def test_metadata_query_with_both_spellings_of_a_64bit_id() -> None:
    """A 64-bit ID is looked up padded (OTLP) or short (pushed metadata), joined with `or`."""
    assert metadata_query('{service_name="legacy-billing"}', ["00000000000000007b4c2d9e1f3a5b6c", "7b4c2d9e1f3a5b6c"]) == (
        '{service_name="legacy-billing"} | trace_id="00000000000000007b4c2d9e1f3a5b6c" or trace_id="7b4c2d9e1f3a5b6c"')


@pytest.mark.parametrize(("raw", "literal"), [
    ("plain", '"plain"'),
    ('a"b', '"a\\"b"'),
    ("back\\slash", '"back\\\\slash"'),
    ("a\nb\rc\td", '"a\\nb\\rc\\td"'),
    ("\x01\x1f", '"\\u0001\\u001f"'),
    ("moon🌙 é", '"moon🌙 é"'),  # raw UTF-8, never surrogate pairs (Loki refuses those)
])
def test_quote_writes_go_escapes(raw: str, literal: str) -> None:
    """Escapes are the ones Loki's lexer accepts; non-ASCII stays raw UTF-8."""
    assert quote(raw) == literal


def test_quote_refuses_lone_surrogates() -> None:
    """A lone surrogate has no UTF-8 spelling, so no literal can hold it."""
    with pytest.raises(ValueError, match="surrogate"):
        quote("x\ud83d")


@given(st.text())
def test_quote_round_trips_and_stays_one_literal(value: str) -> None:
    """Any text comes back unchanged and cannot end the literal early."""
    literal = quote(value)
    assert json.loads(literal) == value
    assert GO_LITERAL.fullmatch(literal)


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_attempts_stay_inside_the_literal(value: str) -> None:
    """A hostile needle parses back as one line filter holding exactly the needle."""
    query = parse_logql(line_filter_query('{service_name="x"}', value))
    assert query.matchers == [("service_name", "=", "x")]
    assert query.stages == [("line", ("|=", value))]


def test_regex_escape_leaves_dashes_and_escapes_re2_metacharacters() -> None:
    """Service names stay readable; every RE2 metacharacter is escaped."""
    assert regex_escape("api-gateway") == "api-gateway"
    assert regex_escape(r"a.b+c*d?e(f)g|h[i]j{k}l^m$n\o") == r"a\.b\+c\*d\?e\(f\)g\|h\[i\]j\{k\}l\^m\$n\\o"


@given(st.lists(st.text(min_size=1), min_size=2, max_size=5, unique=True))
def test_selector_regex_matches_exactly_the_services(services: list[str]) -> None:
    """The `=~` alternative matches each service in full and nothing glued together."""
    selector = stream_selector("service_name", services)
    matchers = parse_logql(selector).matchers
    assert len(matchers) == 1 and matchers[0][:2] == ("service_name", "=~")
    pattern = re.compile(matchers[0][2])
    assert all(pattern.fullmatch(s) for s in services)
    assert not pattern.fullmatch("".join(sorted(services)) + "\x00")


def test_selector_shapes() -> None:
    """One service → equality; several → sorted, de-duplicated alternatives; hostile names stay values."""
    assert stream_selector("service_name", ["api-gateway"]) == '{service_name="api-gateway"}'
    assert stream_selector("service_name", ["b", "a", "b", ""]) == '{service_name=~"a|b"}'
    assert stream_selector("app", ['x"} |= "y', "z.z"]) == '{app=~"x\\"\\\\} \\\\|= \\"y|z\\\\.z"}'
    assert parse_logql(stream_selector("app", ['x"} |= "y'])).matchers == [("app", "=", 'x"} |= "y')]


@pytest.mark.parametrize("label", ["service.name", "1abc", "", 'a"', "a b"])
def test_selector_refuses_bad_label_names(label: str) -> None:
    """Label names cannot be quoted, so anything but [a-zA-Z_][a-zA-Z0-9_]* is refused."""
    with pytest.raises(ValueError, match="label name"):
        stream_selector(label, ["x"])


def test_selector_needs_a_value() -> None:
    """An empty selector would be refused by Loki (empty-compatible matcher): refuse it here."""
    with pytest.raises(ValueError):
        stream_selector("service_name", ["", ""])

"""The native render of the spans (native/src/render_spans.rs) gives exactly what the Python code gives.

Differential, as tests/test_native.py does for the log lines: statement and path shapes against the
regexes (random text over the characters the patterns branch on, every ordered pair of pieces, the
hand-written real statements and paths under tests/fixtures/own/shapes/), a span's target against
`identity.target_python` (generated attribute sets, every fixture trace), and the whole `spans` list against
`render._spans_python` on every fixture trace, generated trees and the bench's trace. Where the native code
hands a case back (non-ASCII text, a URL, a str subclass) the answer must still be Python's.
"""

from __future__ import annotations

import json
import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from correlator import render
from correlator.analysis import identity
from correlator.join import ids_by_span
from correlator.model import Span, SpanEvent, Trace
from correlator.sources import _native
from correlator.sources.files import FileFormatError, InputFile, read_trace
from correlator.spantree import build_tree
from tests.conftest import FIXTURES
from tests.strategies import span_trees

pytestmark = pytest.mark.skipif(
    not all(hasattr(_native.MODULE, f) for f in identity.NATIVE_FUNCTIONS) and os.environ.get("CORRELATOR_REQUIRE_NATIVE") != "1",
    reason="correlator_native is not installed, or built before render_spans.rs (pip install ./native)")

SHAPES = FIXTURES / "own" / "shapes"
REAL_STATEMENTS: list[str] = json.loads((SHAPES / "statements.json").read_text())
REAL_PATHS: list[str] = json.loads((SHAPES / "paths.json").read_text())

# What the four statement patterns and the squeeze branch on, ASCII (the native scan's domain).
_STATEMENT_ALPHABET = "0x19aAfFeE.+-$_ \t\n\x0b\x1c'\"\\(),?=*"
_STATEMENT_PIECES = ["(", ")", ",", "?", "'", "''", "\\'", "\\", '"', '\\"', "7", "-1.5e3", "1e", "2.", ".5", "0x", "0xFF",
                     "0X1", "$1", "x9", "_", "VALUES", "IN", " ", "  ", "\t", "\n", "\x1f", "(?)", "(?, ?)", "( ? )",
                     "(1, 2)", ", ", "= -", "é", "٣", "\u2003"]
_PATH_ALPHABET = "/0129abcdefABCDEFgx-?_ \n\t"
_PATH_PIECES = ["/", "42", "0123456789abcdef", "0123456789ABCDEF0", "12345678-", "1234-1234-1234-1234567890ab", "-", "?",
                "x", " ", "\n", "{id}", "٤", "é"]


def _native_module() -> Any:
    assert _native.MODULE is not None
    return _native.MODULE


def _same_statement(text: str) -> None:
    native = _native_module().normalise_statement(text)
    if text.isascii():
        assert native == identity.statement_shape(text), text
    else:
        assert native is None, text  # Python's \d, \w and \s are Unicode classes: its regexes decide
    identity._statement_cache.pop(text, None)
    assert identity.normalise_statement(text) == identity.statement_shape(text)


def _same_path(text: str) -> None:
    native = _native_module().normalise_path(text)
    if text.isascii():
        assert native == identity.path_shape(text), text
    else:
        assert native is None, text
    identity._path_cache.pop(text, None)
    assert identity.normalise_path(text) == identity.path_shape(text)


@pytest.mark.parametrize("statement", REAL_STATEMENTS)
def test_real_statements_take_the_regexes_shape(statement: str) -> None:
    _same_statement(statement)


def test_the_real_statements_are_mostly_shaped_natively() -> None:
    """The fixture is not all corners: most of it is the scan's to shape (the test above would pass on None)."""
    shaped = [s for s in REAL_STATEMENTS if _native_module().normalise_statement(s) is not None]
    assert len(shaped) >= len(REAL_STATEMENTS) - 6
    assert _native_module().normalise_statement("SELECT * FROM users WHERE id = 7") == "SELECT * FROM users WHERE id = ?"


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=_STATEMENT_ALPHABET, max_size=40))
def test_random_statements_take_the_regexes_shape(statement: str) -> None:
    _same_statement(statement)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(_STATEMENT_PIECES), max_size=12).map("".join))
def test_statements_of_pieces_take_the_regexes_shape(statement: str) -> None:
    _same_statement(statement)


def test_every_pair_and_triple_of_pieces_takes_the_regexes_shape() -> None:
    """Exhaustive where hypothesis samples: a wrong branch in the scan fails here on some short input."""
    ascii_pieces = [p for p in _STATEMENT_PIECES if p.isascii()]
    for a in _STATEMENT_PIECES:
        for b in _STATEMENT_PIECES:
            _same_statement(a + b)
            if a.isascii() and b.isascii():
                for c in ascii_pieces:
                    _same_statement(a + b + c)


@pytest.mark.parametrize("path", REAL_PATHS)
def test_real_paths_take_the_regexes_shape(path: str) -> None:
    _same_path(path)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.text(alphabet=_PATH_ALPHABET, max_size=50),
                 st.lists(st.sampled_from(_PATH_PIECES), max_size=12).map("".join)))
def test_random_paths_take_the_regexes_shape(path: str) -> None:
    _same_path(path)


class _Text(str):
    """A str subclass: the native code must hand it back (its formatting is Python's)."""


_TARGET_KEYS = ["rpc.method", "rpc.service", "db.query.text", "db.statement", "messaging.destination.name",
                "messaging.destination", "http.route", "url.template", "url.path", "http.target", "url.full", "http.url",
                "peer.service", "server.address", "net.peer.name", "http.method", "other"]
_VALUES = st.one_of(st.sampled_from(["", "x", "Get", "SELECT * FROM t WHERE id = 7", "/users/42?x=1", "http://h:1/a/42?q",
                                     "db-1", "José = 3", "  ", "/a/0123456789abcdef0"]),
                    st.text(max_size=8), st.integers(), st.none(), st.booleans(), st.just(_Text("sub")), st.just(["a"]))


def _span(attributes: Any, kind: Any = "client") -> Span:
    return Span("00000000000000a1", None, "svc", "op", 0, 1, kind=kind, attributes=attributes)


def _same_target(span: Span) -> bool:
    """Both answers equal; True when the native code answered itself."""
    native = _native_module().span_target(span.attributes, span.kind)
    expected = identity.target_python(span)
    assert identity.target(span) == expected
    if native is NotImplemented:
        return False
    assert native == expected and type(native) is type(expected), (span.attributes, span.kind)
    return True


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_TARGET_KEYS), _VALUES, max_size=6),
       st.sampled_from(["client", "producer", "server", "internal", "consumer", "", _Text("client")]))
def test_generated_attributes_give_the_python_target(attributes: dict[str, Any], kind: str) -> None:
    _same_target(_span(attributes, kind))


def test_targets_the_native_code_leaves_to_python() -> None:
    from types import MappingProxyType

    assert _native_module().span_target({"url.full": "http://h/a/1"}, "client") is NotImplemented  # urlsplit's rules
    assert _native_module().span_target({"db.statement": "SELECT 'é'"}, "client") is NotImplemented  # Unicode classes
    assert _native_module().span_target({"db.statement": _Text("SELECT 1")}, "client") is NotImplemented
    assert _native_module().span_target(MappingProxyType({"db.statement": "x"}), "client") is NotImplemented
    for attributes in ({"url.full": "http://h/a/1"}, {"db.statement": "SELECT 'é' WHERE id = 3"}):
        assert not _same_target(_span(attributes))
    assert _same_target(_span({"rpc.method": "Get", "rpc.service": "stock.Stock", "peer.service": "stock"}))
    # A host names the callee only when nothing better does.
    assert _native_module().span_target({"server.address": "10.0.0.7", "url.path": "/users/42/items"}, "client") == \
        "/users/{id}/items"
    assert _native_module().span_target({"server.address": "10.0.0.7", "net.peer.name": "db-1"}, "client") == "10.0.0.7"
    assert _native_module().span_target({"server.address": "10.0.0.7"}, "server") is None


def _fixture_traces() -> list[tuple[str, Trace]]:
    traces = []
    for path in sorted((FIXTURES / "upstream" / "jaeger").glob("*.json")) + sorted((FIXTURES / "own").rglob("*trace*.json")):
        try:
            traces.append((path.name, read_trace(InputFile(path.name, path.read_bytes()), None)))
        except FileFormatError:
            continue  # not a trace file (a search answer)
    return traces


FIXTURE_TRACES = _fixture_traces()


def _spans_both_ways(trace: Trace) -> tuple[bytes, bytes]:
    """The `spans` list rendered natively and by `_spans_python`, as orjson writes them (a 17th of the body each)."""
    from correlator.analysis import analyse
    from correlator.config import load_settings

    tree = build_tree(trace)
    analyse(tree, load_settings(environ={}).analysis, {})  # fills tree.targets for the spans it asks about
    ids = ids_by_span((), ())
    native = render._spans(tree, ids, ids, ids)
    python = orjson.dumps(render._spans_python(tree, ids, ids, ids, [], []), option=orjson.OPT_NON_STR_KEYS)
    written = render._spans_json(tree, ids, ids, ids)  # the JSON without the dicts: the same bytes
    assert written is not None
    assert orjson.dumps(written) == python
    return orjson.dumps(native, option=orjson.OPT_NON_STR_KEYS), python


def test_the_fixtures_hold_traces() -> None:
    assert len(FIXTURE_TRACES) >= 3


@pytest.mark.parametrize(("name", "trace"), FIXTURE_TRACES, ids=[name for name, _ in FIXTURE_TRACES])
def test_every_fixture_trace_renders_the_same_spans(name: str, trace: Trace) -> None:
    native, python = _spans_both_ways(trace)
    assert native == python
    for span in trace.spans:
        _same_target(span)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(span_trees(max_spans=30, malformed=True))
def test_generated_trees_render_the_same_spans(trace: Trace) -> None:
    native, python = _spans_both_ways(trace)
    assert native == python


def test_odd_spans_render_as_python_renders_them() -> None:
    """Events, a tie in the ms rounding, a negative duration, attributes that are not a dict, a URL target."""
    from types import MappingProxyType

    spans = (
        Span("00000000000000a1", None, "api", "GET /users/42", 1_000_000_000, 1_000_001_500, kind="server",
             attributes={"http.route": "/users/{id}"},
             events=(SpanEvent("late", 999_000_000, {"k": "v"}), SpanEvent("exception", 1_000_000_700, {}))),
        Span("00000000000000a2", "00000000000000a1", "api", "SELECT", 1_000_000_500, 1_000_000_400, kind="client",
             status="error", status_message="boom", attributes=MappingProxyType({"db.statement": "SELECT 1 WHERE x = 'é'"})),
        Span("00000000000000a3", "00000000000000a1", "api", "HTTP GET", 1_000_001_000, 1_000_001_200, kind="client",
             attributes={"url.full": "http://pricing:8080/price/7?q=1", "peer.service": "pricing"}),
    )
    native, python = _spans_both_ways(Trace("1" * 32, spans))
    assert native == python
    assert b'"target":"pricing /price/{id}"' in native


def test_the_bench_trace_renders_natively_and_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """The native list is really used for a plain trace: the Python renderer is not called."""
    from bench.fake_backends import otlp_trace
    from correlator.sources.jaeger import parse_otlp_answer

    trace = parse_otlp_answer(otlp_trace(3000), "4bf92f3577b34da6a3ce929d0e0e4736")
    assert trace is not None
    native, python = _spans_both_ways(trace)
    assert native == python
    tree = build_tree(trace)
    ids = ids_by_span((), ())

    def refuse(*args: Any) -> Any:
        raise AssertionError("the native render handed a plain trace back")

    monkeypatch.setattr(render, "_spans_python", refuse)
    assert len(render._spans(tree, ids, ids, ids)) == 3000


# Attribute values of every kind orjson writes, and the strings it escapes (controls, quotes, Unicode, emoji).
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from('"\\\x00\x08\x0b\x1f\x7f/\u2028é😀'),
                max_size=12)
_ATTRIBUTE_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=True), _TEXT,
              st.just(_Text("sub"))),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.dictionaries(_TEXT | st.sampled_from(["db.statement", "peer.service", 7]), _ATTRIBUTE_VALUES,
                                          max_size=4),
                          st.one_of(st.none(), _TEXT), _TEXT, st.integers(-5_000, 5_000_000)), min_size=1, max_size=6))
def test_generated_attribute_values_and_texts_are_written_as_orjson_writes_them(
        rows: list[tuple[dict[str, Any], str | None, str, int]]) -> None:
    spans = [Span(f"{i + 1:016x}", None if i == 0 else "0000000000000001", service, service[::-1], 1_000_000 + i * 7,
                  1_000_000 + i * 7 + duration, status_message=message, attributes=attributes,
                  events=(SpanEvent(service, 999_999, attributes),) if duration % 3 == 0 else ())
             for i, (attributes, message, service, duration) in enumerate(rows)]
    native, python = _spans_both_ways(Trace("1" * 32, tuple(spans)))
    assert native == python


def test_a_string_orjson_refuses_fails_the_same_way() -> None:
    """A lone surrogate: orjson raises for the body; the native writer must not write something instead."""
    trace = Trace("1" * 32, (Span("0000000000000001", None, "api", "op", 0, 1, attributes={"k": "\ud800"}),))
    tree = build_tree(trace)
    ids = ids_by_span((), ())
    with pytest.raises(orjson.JSONEncodeError) as python_error:
        orjson.dumps(render._spans_python(tree, ids, ids, ids, [], []))
    with pytest.raises(orjson.JSONEncodeError) as native_error:
        render._spans_json(tree, ids, ids, ids)
    assert str(native_error.value) == str(python_error.value)


def test_milliseconds_are_written_as_orjson_writes_the_float() -> None:
    """`k / 1000` for k < 2⁵²: the decimal itself is the float's shortest form (`7.0`, `0.001`, `12.5`)."""
    import random

    rng = random.Random(14)
    ks = [*range(0, 3000), *(rng.randrange(2**52 // 1000) for _ in range(20_000)), *range(2**52 // 1000 - 2000, 2**52 // 1000)]
    spans = tuple(Span(f"{i + 1:016x}", None, "s", "o", 0, k * 1000) for i, k in enumerate(ks))
    tree = build_tree(Trace("1" * 32, spans))
    ids = ids_by_span((), ())
    written = render._spans_json(tree, ids, ids, ids)
    assert written is not None
    assert orjson.dumps(written) == orjson.dumps(render._spans_python(tree, ids, ids, ids, [], []))


def test_the_10k_body_written_with_spans_as_json_is_the_golden_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The body the service writes (api, offload, the page's data block) with the spans as JSON: the golden bytes."""
    import lzma

    from tests import spanbody
    from tests.spanmix import TRACE_ID, bodies
    from tests.test_spans_identical import GOLDEN, _without_sources

    whole = render.correlation_body
    monkeypatch.setattr(render, "correlation_body", lambda outcome, settings: whole(outcome, settings, spans_as_json=True))
    got = spanbody.render_body(*bodies(10_000, 3000, 1000), TRACE_ID)
    assert _without_sources(got) == _without_sources(lzma.decompress(GOLDEN.read_bytes()))


def test_an_older_extension_without_the_spans_render_leaves_it_to_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel built before render_spans.rs (only the line loop): shapes, targets and the spans' render in Python."""
    from types import SimpleNamespace

    trace = Trace("1" * 32, (Span("0000000000000001", None, "api", "GET /users/42", 0, 1_500, kind="client",
                                  attributes={"db.statement": "SELECT 1 WHERE id = 7"}),))
    tree = build_tree(trace)
    ids = ids_by_span((), ())
    expected = orjson.dumps(render._spans_python(tree, ids, ids, ids, [], []))
    assert set(identity.NATIVE_FUNCTIONS) <= set(dir(_native_module()))  # this build has them all
    monkeypatch.setattr(_native, "MODULE", SimpleNamespace(render_logs=_native_module().render_logs))
    identity._statement_cache.clear()
    assert render._spans_json(tree, ids, ids, ids) is None
    assert orjson.dumps(render._spans(tree, ids, ids, ids)) == expected
    assert identity.target(trace.spans[0]) == "SELECT ? WHERE id = ?"


def _by_dicts(tree: Any, ids: Any) -> bytes | None:
    """The spans' JSON by the older entry point, which reads the tree's ID-keyed dicts."""
    written: bytes | None = _native_module().render_spans_json(
        tree.order, tree.by_id, tree.self_ns, tree.depth, tree.targets, ids, ids, ids, tree.start_ns, render._ms,
        render._events, identity.target, render._dumps)
    return written


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(span_trees(max_spans=30, malformed=True))
def test_the_columns_render_the_bytes_the_dicts_render(trace: Trace) -> None:
    """`render_spans_json_cols` (the tree's columns, by position) writes what `render_spans_json` (by span ID) does,
    for trees built natively, by Python (malformed ones) and by hand (`columns()` of a tree without them)."""
    from correlator.analysis import analyse
    from correlator.config import load_settings
    from correlator.spantree import columns

    tree = build_tree(trace)
    analyse(tree, load_settings(environ={}).analysis, {})
    ids = ids_by_span((), ())
    expected = _by_dicts(tree, ids)
    assert expected is not None
    written = render._spans_json(tree, ids, ids, ids)
    assert written is not None and orjson.dumps(written) == expected
    tree.cols = None
    columns(tree)
    written = render._spans_json(tree, ids, ids, ids)
    assert written is not None and orjson.dumps(written) == expected


def test_a_big_trace_is_written_from_the_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.fake_backends import otlp_trace
    from correlator.sources.jaeger import parse_otlp_answer

    trace = parse_otlp_answer(otlp_trace(3000), "4bf92f3577b34da6a3ce929d0e0e4736")
    assert trace is not None
    tree = build_tree(trace)
    ids = ids_by_span((), ())
    asked: list[str] = []

    def recording(name: str) -> Any:
        asked.append(name)
        return identity.native_function(name)

    monkeypatch.setattr(render, "native_function", recording)
    written = render._spans_json(tree, ids, ids, ids)
    assert asked == ["render_spans_json_cols"]
    assert written is not None and orjson.dumps(written) == _by_dicts(tree, ids)


def test_columns_that_do_not_hold_what_they_promise_go_to_the_dicts() -> None:
    """A position out of range or a non-int own time: the columns' writer hands back, the ID-keyed one writes."""
    trace = Trace("1" * 32, (Span("0000000000000001", None, "api", "op", 0, 1_500),
                             Span("0000000000000002", "0000000000000001", "api", "op", 500, 1_000)))
    ids = ids_by_span((), ())
    broken: dict[str, Any]
    for broken in ({"order": [0, 7]}, {"order": [0, -1]}, {"self_ns": [1000, 1.5]}, {"depths": [0]}, {"spans": []}):
        tree = build_tree(trace)
        expected = _by_dicts(tree, ids)
        assert tree.cols is not None
        for name, value in broken.items():
            object.__setattr__(tree.cols, name, value)
        cols = tree.cols
        assert _native_module().render_spans_json_cols(
            cols.order, cols.depths, cols.ids, cols.spans, cols.self_ns, tree.targets, ids, ids, ids, tree.start_ns,
            render._ms, render._events, identity.target, render._dumps) is None
        written = render._spans_json(tree, ids, ids, ids)
        assert written is not None and orjson.dumps(written) == expected

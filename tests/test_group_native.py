"""Items grouped by their span natively (native/src/group.rs) are grouped as Python groups them (`join._group_python`).

The same dict — keys in the same order, lists of the same objects in item order — for the analysis's evidence
(`join.lines_by_span`) and the render's IDs per span (`join.ids_by_span`), on generated items and placements: span IDs
repeated, interleaved, equal but distinct `str` objects, `None`; what the native path does not take (lists, a length
mismatch, a dict already holding something) is left to Python untouched, and errors are Python's.
Also the JSON string writer the native render shares (`json_out::write_text`, SSE2 blocks): escapes at every
position of texts around its 16-byte blocks are written as orjson writes them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator import join
from correlator.model import Confidence, Exemplar, LogLine, Match, Placement
from correlator.render import _logs_json, _logs_python
from correlator.sources import _native

native_group = getattr(_native.MODULE, "group_by_span", None)
needs_native = pytest.mark.skipif(native_group is None, reason="the extension here has no `group_by_span` (pip install ./native)")

_SPANS = [f"{i:016x}" for i in range(1, 7)]


def _line(i: int, span_id: str | None = None) -> LogLine:
    return LogLine(f"log-{i:016x}", 1_700_000_000_000_000_000 + i, f"line {i}", "svc", "info", {"service_name": "svc"}, {},
                   span_id)


def _copy(text: str) -> str:
    """An equal `str` that is another object (a dict key found by equality, not identity)."""
    return "".join(list(text))


@st.composite
def items_and_places(draw: st.DrawFn) -> tuple[tuple[Any, ...], tuple[Placement, ...]]:
    count = draw(st.integers(0, 120))
    run = draw(st.sampled_from([1, 1, 3, 8]))  # consecutive items of one span, or interleaved spans
    places: list[Placement] = []
    for i in range(count):
        if i % run == 0 or not places:
            choice = draw(st.one_of(st.none(), st.sampled_from(_SPANS), st.sampled_from(_SPANS).map(_copy)))
            match = draw(st.sampled_from(list(Match)))
            confidence = draw(st.one_of(st.none(), st.sampled_from(list(Confidence))))
            placement = Placement(choice, match, confidence)
        places.append(placement)
    kind = draw(st.sampled_from(["lines", "exemplars"]))
    if kind == "lines":
        items: tuple[Any, ...] = tuple(_line(i) for i in range(count))
    else:
        items = tuple(Exemplar(f"ex-{i}", "m", {"service": "svc"}, {}, 0.5, 1_000 + i, "1" * 32, None) for i in range(count))
    return items, tuple(places)


def _python(items: tuple[Any, ...], places: tuple[Placement, ...], field: str | None) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    join._group_python(out, items, places, field)
    return out


def _same(native: dict[str, list[Any]], python: dict[str, list[Any]]) -> None:
    assert list(native) == list(python)  # the same keys in the same order
    for (key, got), (want_key, want) in zip(native.items(), python.items(), strict=True):
        assert key is want_key  # the first placement's own key object, as setdefault keeps it
        assert type(got) is list and len(got) == len(want)
        assert all(a is b for a, b in zip(got, want, strict=True))


@needs_native
@settings(max_examples=400, deadline=None)
@given(items_and_places(), st.sampled_from([None, "id"]), st.sampled_from([dict, lambda: defaultdict(list)]))
def test_native_grouping_is_pythons(case: tuple[tuple[Any, ...], tuple[Placement, ...]], field: str | None, make: Any) -> None:
    items, places = case
    out = make()
    assert native_group(out, items, places, field) is True
    assert type(out) is type(make())
    _same(out, _python(items, places, field))


@needs_native
def test_what_the_native_path_does_not_take_is_left_untouched() -> None:
    lines = (_line(1), _line(2))
    places = (Placement(_SPANS[0], Match.SPAN_ID), Placement(None, Match.TRACE))
    for out, items, placements in [({}, list(lines), places), ({}, lines, list(places)), ({}, lines, places[:1]),
                                   ({"x": []}, lines, places)]:
        before = dict(out)
        assert native_group(out, items, placements, "id") is False
        assert out == before
    with pytest.raises(ValueError, match=r"shorter|longer"):  # the Python loop's own error (zip strict)
        join.ids_by_span(lines, places[:1])


@needs_native
def test_errors_are_raised_as_python_raises_them() -> None:
    lines = (_line(1),)
    with pytest.raises(AttributeError):
        native_group({}, lines, (Placement(_SPANS[0], Match.SPAN_ID),), "no_such_field")
    with pytest.raises(AttributeError):
        _python(lines, (Placement(_SPANS[0], Match.SPAN_ID),), "no_such_field")
    unhashable = (mock.Mock(span_id=["a list"]),)
    with pytest.raises(TypeError):
        native_group({}, lines, unhashable, None)
    with pytest.raises(TypeError):
        _python(lines, unhashable, None)  # type: ignore[arg-type]


@needs_native
def test_join_functions_take_the_native_path_and_give_pythons_answer() -> None:
    lines = tuple(_line(i) for i in range(500))
    places = tuple(Placement(_SPANS[i % 5] if i % 7 else None, Match.SPAN_ID) for i in range(500))
    with mock.patch.object(join, "_group_python", side_effect=AssertionError("the Python loop ran")):
        ids, by_span = join.ids_by_span(lines, places), join.lines_by_span(lines, places)
    assert type(ids) is defaultdict and type(by_span) is dict
    _same(dict(ids), _python(lines, places, "id"))
    _same(by_span, _python(lines, places, None))
    with mock.patch.object(_native, "MODULE", None):  # no extension: the same answer from Python
        _same(dict(join.ids_by_span(lines, places)), dict(ids))
        _same(join.lines_by_span(lines, places), by_span)


def test_without_items_no_groups() -> None:
    assert join.ids_by_span((), ()) == {}
    assert join.lines_by_span((), ()) == {}


# ------------------------------------------------------------------------------ the JSON string writer

_PIECES = ["a", "é", "🙂", '"', "\\", "\n", "\t", "\x00", "\x1f", "\x7f", "\u2028", "/", "<"]


@pytest.mark.skipif(getattr(_native.MODULE, "render_logs_json", None) is None, reason="no native render_logs_json")
def test_lines_with_escapes_at_every_position_around_the_blocks() -> None:
    """Texts of 0-49 characters with one escaped or multi-byte character at each position (the 16-byte blocks'
    edges, the tail), and runs of escapes: the lines' JSON is orjson's for Python's dicts."""
    texts = [""]
    for length in range(1, 50):
        for at in range(length):
            for piece in ('"', "\n", "\x01", "é", "🙂", "\\"):
                texts.append("x" * at + piece + "y" * (length - at - 1))
    texts += ["".join(_PIECES) * k for k in range(1, 6)] + ["\x00" * 40, '"' * 33, "ab\\" * 17]
    lines = tuple(LogLine(f"log-{i}", 1_700_000_000_000_000_000 + i, text, text[:20] or None, "info", {"k": text},
                          {text[:17]: text[-17:]}, None) for i, text in enumerate(texts))
    places = tuple(Placement(None, Match.TRACE) for _ in lines)
    written = _logs_json(lines, places)
    assert written is not None
    assert orjson.dumps(written) == orjson.dumps(_logs_python(lines, places))


@pytest.mark.skipif(getattr(_native.MODULE, "render_logs_json", None) is None, reason="no native render_logs_json")
@settings(max_examples=150, deadline=None)
@given(st.data())
def test_lines_sharing_some_objects_and_not_others(data: st.DataObject) -> None:
    """The pieces between a line's values are copied from the previous line's only when made of the same objects:
    lines that alternate between objects, equal values in distinct objects, None and set confidences, any order."""
    services = ["svc", _copy("svc"), "other", None, "é\n\"x\""]
    levels = ["info", _copy("info"), "error", None]
    labels = [{"service_name": "svc"}, {"service_name": "svc"}, {"a": "1", "b": "\u2028"}, {}]
    metadata = [{}, {"trace_id": "1" * 32}, {"trace_id": "1" * 32}, {"k": "v\tw"}]
    spans = [None, *_SPANS[:3], _copy(_SPANS[0])]
    count = data.draw(st.integers(0, 40))
    lines, places = [], []
    for i in range(count):
        pick = data.draw(st.tuples(st.integers(0, len(services) - 1), st.integers(0, len(levels) - 1),
                                   st.integers(0, len(labels) - 1), st.integers(0, len(metadata) - 1),
                                   st.integers(0, len(spans) - 1), st.sampled_from(list(Match)),
                                   st.one_of(st.none(), st.sampled_from(list(Confidence)))))
        s, lv, lb, md, sp, match, confidence = pick
        lines.append(LogLine(f"log-{i}", 1_700_000_000_000_000_000 + i * 7_000_000, f"text {i}", services[s], levels[lv],
                             labels[lb], metadata[md], spans[sp]))
        places.append(Placement(spans[sp], match, confidence))
    written = _logs_json(tuple(lines), tuple(places))
    assert written is not None
    assert orjson.dumps(written) == orjson.dumps(_logs_python(lines, places))

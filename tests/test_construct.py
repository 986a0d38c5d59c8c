"""`fast_constructor` makes the very object the dataclass's own `__init__` makes (issue 14, P2)."""

from __future__ import annotations

import abc
import dataclasses
import gc
import math
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from correlator.analysis import Analysis
from correlator.analysis.common import Context
from correlator.analysis.critical_path import CriticalPath
from correlator.construct import fast_constructor, python_constructor
from correlator.correlate import Outcome
from correlator.model import Correlation, Exemplar, Finding, LogLine, Match, Placement, Span
from correlator.sources import _native
from correlator.spantree import Columns, SpanTree

texts = st.text(max_size=8)
label_maps = st.dictionaries(texts, texts, max_size=3)


@given(st.tuples(texts, texts, label_maps, label_maps, st.floats(allow_nan=False), st.integers(), texts, st.none() | texts))
def test_an_exemplar_made_fast_equals_one_made_by_init(values: tuple[object, ...]) -> None:
    fast, slow = fast_constructor(Exemplar)(*values), Exemplar(*values)  # type: ignore[arg-type]
    assert fast == slow and repr(fast) == repr(slow)
    assert dataclasses.astuple(fast) == dataclasses.astuple(slow)


def test_every_field_is_set_and_the_object_stays_frozen() -> None:
    values = ("1" * 16, None, "svc", "op", 1, 2, "server", "ok", None, {"a": 1}, (), ())
    span = fast_constructor(Span)(*values)
    assert span == Span(*values) and span.duration_ns == 1  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        span.service = "other"  # type: ignore[misc]
    line = fast_constructor(LogLine)("id", 5, "text", None, None, {}, {}, None)
    assert line == LogLine("id", 5, "text") and not math.isnan(line.timestamp_ns)


def test_a_class_it_cannot_build_faithfully_is_refused() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            assert self.value >= 0

    @dataclasses.dataclass(frozen=True)
    class WithoutSlots:
        value: int

    for cls in (Checked, WithoutSlots):
        with pytest.raises(TypeError):
            fast_constructor(cls)


# Every class the service builds through `fast_constructor` (the native one when the extension is there).
_BUILT_FAST = (Exemplar, LogLine, Span, Placement, Finding, Context, Analysis, Correlation, Outcome, SpanTree, Columns,
               CriticalPath)
_native_constructor = getattr(_native.MODULE, "SlotConstructor", None)
needs_native = pytest.mark.skipif(_native_constructor is None, reason="the extension (pip install ./native) is not there")


def _values(cls: type, data: st.DataObject) -> list[object]:
    # Any objects will do (the constructor does not look at them): shared ones, fresh ones, None, containers.
    pool = st.one_of(st.none(), st.integers(), texts, st.builds(object), st.lists(st.integers(), max_size=2),
                     st.dictionaries(texts, st.integers(), max_size=2), st.tuples(texts))
    return [data.draw(pool) for _ in dataclasses.fields(cls)]


@needs_native
@given(st.sampled_from(_BUILT_FAST), st.data())
def test_the_native_constructor_makes_what_the_python_one_makes(cls: type, data: st.DataObject) -> None:
    values = _values(cls, data)
    native: Any = fast_constructor(cls)
    python: Any = python_constructor(cls)
    assert type(native) is _native_constructor  # the extension's, for every class the service builds fast
    fast, slow = native(*values), python(*values)
    assert type(fast) is type(slow) is cls
    names = [f.name for f in dataclasses.fields(cls)]
    assert all(getattr(fast, name) is getattr(slow, name) is value for name, value in zip(names, values, strict=True))
    assert gc.is_tracked(fast) == gc.is_tracked(slow)
    if cls.__dataclass_params__.frozen:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(fast, names[0], None)


@needs_native
def test_the_native_constructor_holds_each_value_once_and_lets_it_go_with_the_object() -> None:
    value, other = object(), object()
    before = sys.getrefcount(value), sys.getrefcount(other)
    made = [fast_constructor(Placement)(value, other, value) for _ in range(1000)]
    assert sys.getrefcount(value) == before[0] + 2000 and sys.getrefcount(other) == before[1] + 1000
    del made
    assert (sys.getrefcount(value), sys.getrefcount(other)) == before


@needs_native
def test_keywords_and_wrong_counts_are_the_python_constructors_to_answer() -> None:
    native, python = fast_constructor(Placement), python_constructor(Placement)
    assert native("a", match=Match.TIME, confidence=None) == python("a", match=Match.TIME, confidence=None)
    for bad in ((), ("a",), ("a", Match.TIME, None, None)):
        with pytest.raises(TypeError) as native_error:
            native(*bad)
        with pytest.raises(TypeError) as python_error:
            python(*bad)
        assert str(native_error.value) == str(python_error.value)


@needs_native
def test_a_class_the_native_constructor_cannot_fill_keeps_the_python_one() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Fresh:
        value: int

        def __new__(cls, *args: object) -> Fresh:
            return object.__new__(cls)  # (a slotted dataclass is a new class: no zero-argument super)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Abstract(abc.ABC):
        value: int

        @abc.abstractmethod
        def size(self) -> int: ...

    assert _native_constructor is not None
    assert type(fast_constructor(Fresh)) is not _native_constructor
    assert fast_constructor(Fresh)(3) == Fresh(3)
    abstract: Any = Abstract  # (mypy: an abstract class is not a `type[T]` to build)
    assert type(fast_constructor(abstract)) is not _native_constructor
    with pytest.raises(TypeError, match="abstract"):  # as `object.__new__` refuses it
        fast_constructor(abstract)(3)
    with pytest.raises(TypeError):
        _native_constructor(Placement, ["span_id", "nothing"], python_constructor(Placement))

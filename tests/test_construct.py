"""`fast_constructor` makes the very object the dataclass's own `__init__` makes (issue 14, P2)."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from correlator.construct import fast_constructor
from correlator.model import Exemplar, LogLine, Span

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

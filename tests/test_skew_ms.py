"""The clock-skew summary's and findings' milliseconds are `round(ns / 1e6, 3)`'s, to the float (and its repr)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.skew import _ms


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.integers(-10**7, 10**7), st.integers(0, 1 << 51), st.integers(0, 10**12).map(lambda k: k * 1000 + 500),
                 st.integers(0, 10**12).map(lambda k: k * 1000 + 499), st.integers(0, 10**12).map(lambda k: k * 1000 + 501),
                 st.integers(-(1 << 60), 1 << 60)))
def test_ms_is_round(ns: int) -> None:
    got, want = _ms(ns), round(ns / 1_000_000, 3)
    assert got == want and str(got) == str(want)

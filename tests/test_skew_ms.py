"""The clock-skew summary's and findings' milliseconds are `round(ns / 1e6, 3)`'s, to the float (and its repr), and the
findings are the ones the former code made."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.model import Finding, Severity, Span
from correlator.skew import ClockEstimate, PairSkew, _finding, _ms, _pair_finding_python, estimate_clocks, skew_findings
from correlator.sources import _native


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.integers(-10**7, 10**7), st.integers(0, 1 << 51), st.integers(0, 10**12).map(lambda k: k * 1000 + 500),
                 st.integers(0, 10**12).map(lambda k: k * 1000 + 499), st.integers(0, 10**12).map(lambda k: k * 1000 + 501),
                 st.integers(-(1 << 60), 1 << 60)))
def test_ms_is_round(ns: int) -> None:
    got, want = _ms(ns), round(ns / 1_000_000, 3)
    assert got == want and str(got) == str(want)


def _skew_findings_before(estimate: ClockEstimate, spans: Mapping[str, Span]) -> tuple[Finding, ...]:
    """`skew_findings` as it was before session 9 (one scan of the skewed spans per pair, `Finding(…)`, `round`)."""
    def ms(ns: int) -> float:
        return round(ns / 1_000_000, 3)
    out = []
    for pair in estimate.pairs:
        ids = tuple(sid for sid in estimate.skewed_spans if spans[sid].service == pair.server
                    and (parent := spans.get(spans[sid].parent_span_id or "")) is not None and parent.service == pair.caller)
        if not pair.skewed or not ids:
            continue
        ahead = "ahead of" if pair.offset_ns > 0 else "behind"
        severity = Severity.WARNING if abs(pair.offset_ns) >= 100_000_000 else Severity.INFO
        out.append(Finding(
            "clock_skew", severity,
            f"{pair.server}'s clock runs {abs(ms(pair.offset_ns))} ms (± {ms(pair.margin_ns)}) {ahead} {pair.caller}'s, "
            f"from {pair.pairs} call(s): {len(ids)} span(s) start before or end after their caller — only the clocks explain "
            "that; times are shown as reported, log lines are matched at the estimated offset",
            ids,
            {"caller": pair.caller, "server": pair.server, "offset_ms": ms(pair.offset_ns),
             "min_ms": ms(pair.low_ns), "max_ms": ms(pair.high_ns), "pairs": pair.pairs},
        ))
    impossible = tuple(estimate.impossible_spans)
    if impossible:
        out.append(Finding(
            "clock_skew", Severity.INFO,
            f"{len(impossible)} server span(s) last longer than the call that caused them: no clock offset explains "
            "that (clocks drifting, or the caller ended its span early)",
            impossible, {"spans": list(impossible)},
        ))
    return tuple(out)


@st.composite
def skewed_traces(draw: st.DrawFn) -> list[Span]:
    """Callers and servers of a few services, each service's clock shifted, times on a coarse grid (ties, skews)."""
    services = ["a", "b", "c", "d"]
    shift = {s: draw(st.sampled_from([0, 0, 1_500, -250_000, 2 * 10**9 + 500])) for s in services}
    spans = [Span("0" * 16, None, "a", "root", 0, 10**9, kind="server")]
    for i in range(1, draw(st.integers(1, 30))):
        parent = draw(st.sampled_from(spans))
        service = draw(st.sampled_from(services))
        start = parent.start_ns + draw(st.integers(-3, 10)) * 1_000_000
        end = start + draw(st.integers(0, 12)) * 1_000_000
        spans.append(Span(f"{i:016x}", parent.span_id, service, f"op{i}", start + shift[service], end + shift[service],
                          kind=draw(st.sampled_from(["server", "server", "client"]))))
    return spans


@settings(max_examples=600, deadline=None)
@given(skewed_traces(), st.sampled_from(["a", "b", None]))
def test_skew_findings_are_as_before(spans: list[Span], reference: str | None) -> None:
    estimate = estimate_clocks(spans, reference)
    by_id = {sp.span_id: sp for sp in spans}
    assert skew_findings(estimate, by_id) == _skew_findings_before(estimate, by_id)


native_skew_finding = getattr(_native.MODULE, "skew_finding", None)
_NS = st.one_of(st.integers(-10**7, 10**7), st.integers(0, 1 << 51), st.integers(0, 10**9).map(lambda k: k * 1000 + 500),
                st.integers(0, 10**6).map(lambda k: k * 1000), st.sampled_from([0, 1, 499, 500, 501, 999_999_999, 100_000_000,
                                                                                 (1 << 50) - 1, 1 << 50, 1 << 63, -(1 << 63)]))


@pytest.mark.skipif(native_skew_finding is None, reason="the extension (pip install ./native) lacks `skew_finding`")
@settings(max_examples=3000, deadline=None)
@given(st.text(max_size=8), st.text(max_size=8), _NS, _NS, st.integers(1, 10**6), st.lists(st.text(max_size=3), min_size=1, max_size=4))
def test_a_pairs_finding_made_natively_is_pythons(caller: str, server: str, a: int, b: int, count: int, ids: list[str]) -> None:
    """Any bounds (ties at .5 µs, negatives, beyond 2⁵⁰ ns and 64 bits: handed back), any names (lone surrogates too)."""
    low, high = min(a, b), max(a, b)
    pair = PairSkew(caller, server, low, high, count)
    python = _pair_finding_python(pair, tuple(ids))
    assert native_skew_finding is not None
    native = native_skew_finding(caller, server, low, high, count, tuple(ids), _finding, Severity.INFO, Severity.WARNING)
    if native is not None:  # None: handed back (an offset `round` decides, a name that is not valid UTF-8)
        assert native == python
        assert repr(native) == repr(python)  # the floats' texts, the evidence's order


@pytest.mark.skipif(native_skew_finding is None, reason="the extension (pip install ./native) lacks `skew_finding`")
def test_p3s_skew_is_made_natively_and_the_rest_handed_back() -> None:
    assert native_skew_finding is not None
    args = (_finding, Severity.INFO, Severity.WARNING)
    made = native_skew_finding("api-gateway", "auth-service", 100_000, 100_000, 1, ("0000000000000002",), *args)
    assert made == _pair_finding_python(PairSkew("api-gateway", "auth-service", 100_000, 100_000, 1), ("0000000000000002",))
    assert "0.1 ms (± 0.0) ahead of api-gateway's" in made.message
    for low, high in ((-1_000, -500), (1_500, 1_500), (1 << 50, 1 << 50), (1 << 64, 1 << 64)):
        assert native_skew_finding("a", "b", low, high, 1, ("x",), *args) is None
    assert native_skew_finding("a", "\ud800", 0, 1_000, 1, ("x",), *args) is None

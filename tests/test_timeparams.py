"""Time hints: any unit Grafana or a human sends, read the same way; absurd windows refused."""

from __future__ import annotations

import pytest

from correlator.errors import InvalidInput
from correlator.timeparams import parse_instant, parse_window

NS = 1_795_572_505_053_254_099


@pytest.mark.parametrize("raw", ["1795572505", "1795572505053", "1795572505053254", str(NS),
                                 "1795572505.053", "2026-11-25T02:08:25Z", "2026-11-25T02:08:25.053254+00:00"])
def test_units_are_read_by_magnitude(raw: str) -> None:
    """s, ms, µs, ns, float seconds and RFC 3339 all land on the same second."""
    assert parse_instant("start", raw) // 1_000_000_000 == NS // 1_000_000_000


@pytest.mark.parametrize(("start", "end", "param"), [
    ("tomorrow", None, "start"), ("2026-11-25T02:08:25", None, "start"), ("2", None, "start"),
    (str(NS), str(NS - 1), "start"), ("2000-01-02T00:00:00Z", "2010-01-01T00:00:00Z", "end"),
    (None, "99999999999999999999", "end"),
])
def test_bad_windows_are_refused_naming_the_parameter(start: str | None, end: str | None, param: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_window(start, end)
    assert info.value.param == param


def test_one_bound_gives_an_instant() -> None:
    window = parse_window(None, str(NS))
    assert window is not None and window.start_ns == window.end_ns == NS
    assert parse_window(None, None) is None

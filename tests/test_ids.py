"""Trace IDs: every spelling of the same 128-bit number correlates; anything else is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from correlator.errors import InvalidTraceId
from correlator.ids import normalise_span_id, parse_trace_id

hex_ids = st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=32).filter(lambda s: int(s, 16) != 0)


class TestParseTraceId:
    @given(hex_ids)
    def test_any_hex_spelling_normalises_to_32_lowercase(self, raw: str) -> None:
        """1-32 hex chars in any case → 32 lower-case chars denoting the same number."""
        tid = parse_trace_id(raw)
        assert len(tid.hex) == 32
        assert tid.hex == tid.hex.lower()
        assert int(tid.hex, 16) == int(raw, 16)

    @given(hex_ids)
    def test_needle_is_inside_every_spelling(self, raw: str) -> None:
        """The Loki line filter finds padded, 16-char and zero-stripped spellings alike."""
        tid = parse_trace_id(raw)
        assert len(tid.needle) >= 16
        for spelling in tid.spellings:
            assert tid.needle in spelling
            assert parse_trace_id(spelling) == tid

    def test_stripped_31_char_exemplar_id_matches_padded(self) -> None:
        """Grafana's Tempo exemplars carry 31-char IDs; they are the same trace as the 32-char form."""
        assert parse_trace_id("b1cdb01cf2a4954dafa0c3dcfa8ffb4").hex == "0b1cdb01cf2a4954dafa0c3dcfa8ffb4"

    def test_legacy_64bit_id_has_both_spellings(self) -> None:
        tid = parse_trace_id("7B4C2D9E1F3A5B6C")
        assert tid.hex == "00000000000000007b4c2d9e1f3a5b6c"
        assert tid.is_64bit and tid.short == "7b4c2d9e1f3a5b6c"
        assert tid.needle == "7b4c2d9e1f3a5b6c"

    @pytest.mark.parametrize("raw", ["", "0", "0" * 32, "g" * 32, "a" * 33, "4bf92f35-77b3-4da6", "abc def",
                                     "4bf9\x00", "١٢٣", "' OR 1=1", '"} |= "x', "a" * 10_000])
    def test_refuses_everything_else(self, raw: str) -> None:
        """Invalid IDs raise InvalidTraceId (→ 400) with the reason, never reaching a backend."""
        with pytest.raises(InvalidTraceId) as info:
            parse_trace_id(raw)
        assert "trace ID" in str(info.value)
        assert len(str(info.value)) < 300  # a 10 kB ID is not echoed back whole

    @given(st.text(max_size=64))
    def test_never_raises_anything_but_invalid_trace_id(self, raw: str) -> None:
        try:
            parse_trace_id(raw)
        except InvalidTraceId:
            pass


class TestSpanId:
    def test_pads_and_lowercases(self) -> None:
        assert normalise_span_id("ABC") == "0000000000000abc"

    @pytest.mark.parametrize("raw", [None, 12, "", "0" * 16, "x" * 16, "a" * 17])
    def test_rejects_non_ids(self, raw: object) -> None:
        assert normalise_span_id(raw) is None

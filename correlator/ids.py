"""Trace and span IDs: the one place they are validated and normalised.

Real producers disagree on how a trace ID is written: W3C/OTLP use 32 lower-case hex
characters, Jaeger's UI model prints a 64-bit ID as 16, and some exemplar producers strip
leading zeros (31-character IDs in Grafana's own fixtures). Every form that denotes the same
128-bit number must correlate, so everything is normalised to 32 lower-case hex characters
here, before any backend is asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from correlator.errors import InvalidTraceId

_HEX = re.compile(r"[0-9a-fA-F]{1,32}")
_SPAN_HEX = re.compile(r"[0-9a-fA-F]{1,16}")

__all__ = ["TraceId", "normalise_span_id", "parse_trace_id"]


@dataclass(frozen=True, slots=True)
class TraceId:
    """A validated trace ID; `hex` is always 32 lower-case hex characters."""

    hex: str
    # Only the lower 64 bits are known (a Datadog decimal ID): `hex` holds them zero-padded, which
    # Jaeger finds only for a 64-bit trace; log lines match on the 16-hex suffix or the decimal.
    lower64_only: bool = False

    @property
    def low64_decimal(self) -> str:
        """The lower 64 bits in decimal, as Datadog's `dd.trace_id` writes them."""
        return str(int(self.hex[16:], 16))

    @property
    def is_64bit(self) -> bool:
        """True when the high half is zero (a legacy 64-bit ID, printed as 16 chars by Jaeger)."""
        return self.hex.startswith("0" * 16)

    @property
    def short(self) -> str:
        """The 16-character form for 64-bit IDs, else the full 32-character form."""
        return self.hex[16:] if self.is_64bit else self.hex

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every lower-case spelling a log line may carry: padded, 16-char, zero-stripped."""
        forms = [self.hex]
        if self.is_64bit:
            forms.append(self.hex[16:])
        stripped = self.hex.lstrip("0")
        if len(stripped) >= 16 and stripped not in forms:
            forms.append(stripped)
        return tuple(forms)

    @property
    def needle(self) -> str:
        """The shortest spelling that is a substring of every other spelling.

        Used as the Loki line filter: one `|=` then finds the padded, the 16-character and the
        zero-stripped forms. Never shorter than 16 characters, so it stays selective.
        """
        return min(self.spellings, key=len)

    def __str__(self) -> str:
        return self.hex


def parse_trace_id(raw: str) -> TraceId:
    """Validate and normalise a trace ID given by a user, a URL, a log line or an exemplar.

    Accepts 1-32 hex characters in any case; left-pads to 32 and lower-cases. The all-zero
    ID is invalid (W3C Trace Context: "all bytes as zero … is considered an invalid value").
    """
    if not isinstance(raw, str):
        raise InvalidTraceId(repr(raw), "a trace ID must be a string")
    candidate = raw.strip()
    if not _HEX.fullmatch(candidate):
        shown = candidate if len(candidate) <= 64 else candidate[:64] + "…"
        raise InvalidTraceId(
            shown, "a trace ID is 1 to 32 hexadecimal characters (W3C: 32; legacy Jaeger: 16)"
        )
    padded = candidate.lower().rjust(32, "0")
    if padded == "0" * 32:
        raise InvalidTraceId(candidate, "the all-zero trace ID is invalid (W3C Trace Context)")
    return TraceId(padded)


def normalise_span_id(raw: object) -> str | None:
    """A span ID as 16 lower-case hex characters, or None when `raw` is not one."""
    if not isinstance(raw, str):
        return None
    candidate = raw.strip()
    if not _SPAN_HEX.fullmatch(candidate):
        return None
    padded = candidate.lower().rjust(16, "0")
    return None if padded == "0" * 16 else padded

"""The backends, each one small async class over one shared `httpx.AsyncClient`.

Every source parses wire JSON into `correlator.model` dataclasses at the edge and raises
only `correlator.errors.SourceError` subclasses; `correlate.py` turns those into the
`sources` block of the answer, so a failing backend is a status, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["SourceResult"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SourceResult(Generic[T]):
    """What a source found; `truncated` when a limit cut the answer."""

    value: T
    truncated: bool = False
    not_found: bool = False
    note: str | None = None  # e.g. "fell back to /api/traces" — shown in sources[].error when set
    cut: str | None = None  # when `truncated`: which part of the answer was dropped, in a sentence

"""The optional native extension (`native/`, Rust via PyO3): loaded once, or None.

Two loops use it: the Loki line loop (`loki._native_lines`) and the Jaeger v3 trace decode
(`jaeger._native_decoder`, which checks the Span/SpanEvent/SpanLink fields it sets itself).

The Python code stays the reference and the fallback: without the extension (a machine with no
Rust, `pip install .` alone) every answer is parsed in Python, with the same results. Set
`CORRELATOR_NATIVE=0` to switch it off; `CORRELATOR_REQUIRE_NATIVE=1` (scripts/test sets it)
turns a missing or unusable extension into an ImportError, so CI cannot pass on the fallback alone.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any

from correlator.model import LogLine

__all__ = ["LOG_LINE_FIELDS", "MODULE"]

# The native code sets these slots in this order (tests/test_native.py compares whole LogLines).
LOG_LINE_FIELDS = ("id", "timestamp_ns", "line", "service", "level", "labels", "metadata", "span_id")


def _load() -> Any | None:
    module: Any | None = None
    if os.environ.get("CORRELATOR_NATIVE", "1") == "0":
        why = "CORRELATOR_NATIVE=0 switches it off"
    else:
        try:
            module, why = importlib.import_module("correlator_native"), None
        except ImportError as exc:
            why = f"correlator_native is not installed ({exc}); pip install ./native"
    if module is not None and tuple(f.name for f in dataclasses.fields(LogLine)) != LOG_LINE_FIELDS:
        module, why = None, "LogLine's fields changed: native/src/lib.rs builds the old ones"
    if module is None and os.environ.get("CORRELATOR_REQUIRE_NATIVE") == "1":
        raise ImportError(f"CORRELATOR_REQUIRE_NATIVE=1 but the native path is unusable: {why}")
    return module


MODULE = _load()

"""The span side of the pipeline made cheaper (issue 14, P2) answers exactly as before: a 10k-span
correlation's response body, byte for byte, against the one main's code rendered before that work
(tests/fixtures/own/spans_identical/, made with tests/spanbody.py)."""

from __future__ import annotations

import lzma

from tests.conftest import FIXTURES
from tests.spanbody import render_body
from tests.spanmix import TRACE_ID, bodies

GOLDEN = FIXTURES / "own" / "spans_identical" / "body_10k.json.xz"


def _without_sources(body: bytes) -> bytes:
    """The body less its `sources` object: what the backends' reports say is not the span side's business
    (and grows fields of its own), everything else must not move a byte."""
    head, rest = body.split(b',"sources":', 1)
    return head + b"," + rest[rest.index(b'"availability":'):]


def test_a_10k_span_body_is_byte_for_byte_the_one_main_rendered() -> None:
    expected = _without_sources(lzma.decompress(GOLDEN.read_bytes()))
    got = _without_sources(render_body(*bodies(10_000, 3000, 1000), TRACE_ID))
    if got != expected:
        at = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), min(len(got), len(expected)))
        raise AssertionError(f"bodies differ from byte {at} (lengths {len(got)} vs {len(expected)}):\n"
                             f"  got      …{got[max(0, at - 200):at + 200]!r}\n  expected …{expected[max(0, at - 200):at + 200]!r}")

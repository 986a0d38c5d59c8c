"""The native list writers write over their last bytes object (json_out.rs `Spare`) only when nothing holds it.

The spans' and the lines' JSON go into the body as `orjson.Fragment`s of a `bytes` object the writer keeps for its next
call (session 8: a big list's pages are faulted in once instead of at every correlation). These check what a user would
see if that went wrong: a body rendered earlier and still held (an answer waiting on its standings, the page and the
JSON made from one body) keeps its bytes while others are rendered, a shorter list after a longer one is cut at its own
end, and every body equals the one written from the dicts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import orjson
import pytest

from correlator import render
from correlator.sources import _native
from tests.test_render_logs_native import _bench_outcome

pytestmark = pytest.mark.skipif(
    not hasattr(_native.MODULE, "render_logs_json") and os.environ.get("CORRELATOR_REQUIRE_NATIVE") != "1",
    reason="correlator_native is not installed, or built before logs_json.rs (pip install ./native)")


def _reference(settings_: Any, outcome: Any) -> bytes:
    return orjson.dumps(render.correlation_body(outcome, settings_), option=orjson.OPT_NON_STR_KEYS)


def _fragments(settings_: Any, outcome: Any) -> dict[str, Any]:
    body = render.correlation_body(outcome, settings_, spans_as_json=True, lines_as_json=True)
    assert isinstance(body["spans"], orjson.Fragment) and isinstance(body["logs"], orjson.Fragment)
    return body


def _dumps(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)


def test_bodies_of_any_size_in_any_order_are_the_dicts_bytes() -> None:
    cases = [_bench_outcome(300, 3000), _bench_outcome(20, 100), _bench_outcome(600, 200), _bench_outcome(5, 5000)]
    expected = [_reference(*case) for case in cases]
    for i in (0, 1, 0, 2, 3, 1, 3, 0, 2, 2):  # longer lists after shorter ones and back: the same writer's object reused
        assert _dumps(_fragments(*cases[i])) == expected[i], i


def test_a_body_still_held_keeps_its_bytes_while_others_are_rendered() -> None:
    big, small = _bench_outcome(300, 3000), _bench_outcome(20, 100)
    held = _fragments(*big)
    for _ in range(3):
        # Each of these would write over `held`'s lists if the writer took an object someone still holds.
        assert _dumps(_fragments(*small)) == _reference(*small)
    also_held = _fragments(*small)
    assert _dumps(held) == _reference(*big)
    assert _dumps(also_held) == _reference(*small)
    del held
    assert _dumps(_fragments(*big)) == _reference(*big)
    assert _dumps(also_held) == _reference(*small)


def test_a_reused_list_is_an_ordinary_bytes_object() -> None:
    """What the writer hands out after writing over its kept object: the length, hash and contents of a fresh `bytes`
    of the same text (nothing of the longer list before it shows), and it is still an exact `bytes`."""
    native = _native.MODULE
    assert native is not None
    _, big = _bench_outcome(300, 3000)
    _, small = _bench_outcome(20, 100)
    for outcome in (big, small, big, small, small):
        lines, places = outcome.correlation.logs, outcome.correlation.log_placements
        written = native.render_logs_json(lines, places, render._second_text, render._MATCH_VALUE, render._CONFIDENCE_VALUE,
                                          render._dumps)
        expected = orjson.dumps(render._logs_python(lines, places), option=orjson.OPT_NON_STR_KEYS)
        assert type(written) is bytes
        assert len(written) == len(expected) and written == expected and hash(written) == hash(expected)
        assert bytes(memoryview(written)) == expected and written.endswith(b"]")
        del written  # the writer's again


def test_with_no_spares_allowed_the_bodies_are_the_same() -> None:
    """`CORRELATOR_JSON_SPARE_MB=0` (read once per process): nothing kept, the same bytes."""
    script = ("import orjson, sys; sys.path.insert(0, '.');"
              "from tests.test_json_spares import _bench_outcome, _reference, _fragments, _dumps;"
              "cases = [_bench_outcome(300, 3000), _bench_outcome(20, 100)];"
              "assert all(_dumps(_fragments(*c)) == _reference(*c) for c in cases + cases[::-1]); print('same')")
    env = {**os.environ, "CORRELATOR_JSON_SPARE_MB": "0"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "same", done.stderr[-2000:]

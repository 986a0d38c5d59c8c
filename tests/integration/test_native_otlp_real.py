"""The native trace decode (native/src/otlp.rs) on a real Jaeger v2's v3 answer: taken natively, and the same
Trace as the Python parse (types and key order included, tests/test_native_otlp.py's comparison)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration import test_jaeger_real as real
from tests.integration.jaeger_server import JaegerServer, run_jaeger
from tests.test_native_otlp import _native_spans, assert_same
from tests.test_native_otlp import pytestmark as native_only

pytestmark = [pytest.mark.integration, native_only]


@pytest.fixture(scope="module")
def jaeger() -> Iterator[JaegerServer]:
    with run_jaeger() as server:
        yield server


async def test_a_real_v3_answer_is_decoded_natively_as_python_does(jaeger: JaegerServer) -> None:
    """The trace of tests/integration/test_jaeger_real.py: six spans over three services, typed attributes
    (int, double, bool, array), an exception event, kinds and statuses as Jaeger writes them."""
    sent = real.send_trace(jaeger.otlp_url)
    await real.fetch_until_found(real.jaeger_source(jaeger), sent)  # stored: all six spans are in
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(f"{jaeger.query_url}/api/v3/traces/{sent.trace_id}")
    assert answer.status_code == 200
    spans = _native_spans(answer.content, sent.trace_id)
    assert spans is not None and len(spans) == 6  # the native code took it itself
    assert assert_same(answer.content, sent.trace_id)

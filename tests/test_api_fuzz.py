"""Bad input, fuzzed: every refused request is 400 problem+json and reaches no backend.

The app runs on a real loopback socket in a thread (hypothesis drives synchronous examples);
its backends are MockTransports that count every request they receive. A nightly-size run
is `HYPOTHESIS_PROFILE=nightly` (≥ 10,000 cases).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from correlator.api import create_app
from correlator.config import load_settings
from correlator.errors import InvalidInput
from correlator.ids import parse_trace_id
from correlator.timeparams import parse_window
from tests.apiclient import Backends


class LiveApp:
    def __init__(self) -> None:
        self.backends = Backends()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        started = threading.Event()

        async def start() -> None:
            app = create_app(load_settings(environ={}), self.backends.transports())
            self.runner = web.AppRunner(app, handle_signals=False)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            started.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(start()), self.loop.run_forever()), daemon=True)
        self.thread.start()
        assert started.wait(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveApp]:
    app = LiveApp()
    yield app
    app.close()


def is_valid(trace_id: str, start: str | None, end: str | None) -> bool:
    try:
        parse_trace_id(trace_id)
        parse_window(start, end)
    except InvalidInput:
        return False
    return True


nasty = st.sampled_from(['"} |= "x', "`", "\\", "' OR 1=1 --", "{service_name=~\".+\"}", "%00", "\u202e", "🙂",
                         "a" * 10_000, "0" * 32, "1" * 33, "../../etc/passwd", "2026-13-45T99:99:99Z", "-1", "1e309", "NaN"])
ids = st.one_of(nasty, st.text(min_size=1, max_size=40), st.text(alphabet="0123456789abcdefABCDEFxyz-", min_size=1, max_size=40))
times = st.one_of(st.none(), nasty, st.text(max_size=30), st.integers(-10**20, 10**20).map(str),
                  st.sampled_from(["2026-11-25T10:00:00Z", "1795572505", "1795572505053254099", "1995572505"]))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(trace_id=ids, start=times, end=times)
def test_refused_input_never_reaches_a_backend(live: LiveApp, trace_id: str, start: str | None, end: str | None) -> None:
    live.backends.requests.clear()
    params = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    path = "/correlate/" + quote(trace_id, safe="")
    response = httpx.get(f"http://127.0.0.1:{live.port}{path}", params=params, timeout=10)
    if response.status_code in (400, 414) or not is_valid(trace_id.strip(), start, end):
        # aiohttp itself refuses some paths (e.g. an encoded NUL) before our handler: 400 or 404 too;
        # a request target over 16 KiB (two 10 kB times) is 414 before any parsing.
        assert response.status_code in (400, 404, 414), (response.status_code, response.text[:200])
        if response.status_code in (400, 414):
            assert response.headers["content-type"].startswith("application/problem+json"), response.text[:200]
        assert live.backends.requests == []
    else:
        assert response.status_code in (200, 404)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.one_of(st.text(max_size=2000), st.binary(max_size=2000)))
def test_from_log_never_500s(live: LiveApp, body: str | bytes) -> None:
    """Any body is a 200/404 correlation, a 400, or a 422 'no trace ID' — never a server error."""
    response = httpx.post(f"http://127.0.0.1:{live.port}/correlate/from-log", content=body, timeout=10)
    assert response.status_code in (200, 400, 404, 422), response.text[:200]

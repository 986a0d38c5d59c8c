"""Retries and circuit breaker under the backend clients."""

from __future__ import annotations

import time

import httpx
import pytest

from correlator.config import load_settings
from correlator.errors import SourceUnavailable
from correlator.sources._http import get, make_client
from correlator.sources._resilience import CircuitBreaker, ResilientTransport, RetryPolicy, deadline


def scripted(*answers: int | Exception, retry_after: str | None = None) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        headers = {"Retry-After": retry_after} if retry_after and answer in (429, 503) else {}
        return httpx.Response(answer, text=str(answer), headers=headers)

    return httpx.MockTransport(handle), seen


def client(inner: httpx.AsyncBaseTransport, attempts: int = 3, breaker: CircuitBreaker | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url="http://backend", transport=ResilientTransport(inner, RetryPolicy(attempts, 0.001), breaker))


class TestRetries:
    async def test_5xx_then_success_is_retried(self) -> None:
        inner, seen = scripted(500, 503, 200)
        async with client(inner) as c:
            assert (await c.get("/x")).status_code == 200
        assert len(seen) == 3

    async def test_connect_errors_are_retried(self) -> None:
        inner, seen = scripted(httpx.ConnectError("refused"), 200)
        async with client(inner) as c:
            assert (await c.get("/x")).status_code == 200
        assert len(seen) == 2

    @pytest.mark.parametrize("status", [400, 404, 501])
    async def test_client_errors_and_not_implemented_are_not_retried(self, status: int) -> None:
        """Answers that a retry cannot change are returned at once."""
        inner, seen = scripted(status)
        async with client(inner) as c:
            assert (await c.get("/x")).status_code == status
        assert len(seen) == 1

    async def test_gives_up_after_the_attempts_and_returns_the_last_answer(self) -> None:
        inner, seen = scripted(503)
        async with client(inner, attempts=3) as c:
            assert (await c.get("/x")).status_code == 503
        assert len(seen) == 3

    async def test_retry_after_is_honoured(self) -> None:
        inner, seen = scripted(429, 200, retry_after="1")
        async with client(inner) as c:
            started = time.perf_counter()
            assert (await c.get("/x")).status_code == 200
        assert time.perf_counter() - started >= 0.95 and len(seen) == 2

    async def test_no_retry_that_would_pass_the_deadline(self) -> None:
        """A Retry-After longer than the time left is not waited for."""
        inner, seen = scripted(429, 200, retry_after="30")
        token = deadline.set(time.monotonic() + 2.0)
        try:
            async with client(inner) as c:
                started = time.perf_counter()
                assert (await c.get("/x")).status_code == 429
            # Not waited for: well within the 2 s left (a slow, busy machine's margin), far from the 30 s asked.
            assert time.perf_counter() - started < 1.0 and len(seen) == 1
        finally:
            deadline.reset(token)

    async def test_posts_are_not_retried(self) -> None:
        inner, seen = scripted(503, 200)
        async with client(inner) as c:
            assert (await c.post("/x")).status_code == 503
        assert len(seen) == 1


class TestBreaker:
    async def test_opens_after_repeated_failures_then_fails_fast(self) -> None:
        inner, seen = scripted(httpx.ConnectError("refused"))
        breaker = CircuitBreaker(failure_threshold=3, reset_seconds=60)
        async with client(inner, attempts=1, breaker=breaker) as c:
            for _ in range(3):
                with pytest.raises(httpx.ConnectError):
                    await c.get("/x")
            assert breaker.state == "open"
            started = time.perf_counter()
            with pytest.raises(httpx.ConnectError, match="circuit open"):
                await c.get("/x")
            # At once, not after the 60 s until a probe is let through: 1 s is room for a slow, busy machine and a
            # full collection of a big test process's heap (5 ms was this machine's own speed, idle).
            assert time.perf_counter() - started < 1.0
        assert len(seen) == 3  # the fourth request never reached the backend

    async def test_half_open_probe_closes_it_again(self) -> None:
        now = [0.0]
        breaker = CircuitBreaker(failure_threshold=1, reset_seconds=5, clock=lambda: now[0])
        inner, _seen = scripted(httpx.ConnectError("refused"), 200)
        async with client(inner, attempts=1, breaker=breaker) as c:
            with pytest.raises(httpx.ConnectError):
                await c.get("/x")
            assert breaker.state == "open"
            now[0] = 6
            assert breaker.state == "half-open"
            assert (await c.get("/x")).status_code == 200
            assert breaker.state == "closed"

    async def test_open_breaker_is_reported_as_unavailable(self) -> None:
        settings = load_settings(environ={"CORRELATOR_LOKI_BREAKER_FAILURES": "1", "CORRELATOR_LOKI_RETRY_ATTEMPTS": "1"})
        inner, _ = scripted(httpx.ConnectError("refused"))
        async with make_client(settings.loki, inner) as c:
            with pytest.raises(SourceUnavailable):
                await get(c, "loki", "/ready")
            with pytest.raises(SourceUnavailable, match="not attempted: circuit open"):
                await get(c, "loki", "/ready")


async def test_body_cap_reports_truncation() -> None:
    """A body larger than max_response_bytes is not read into memory."""
    settings = load_settings(environ={})
    inner = httpx.MockTransport(lambda r: httpx.Response(200, content=b"x" * 5000))
    async with make_client(settings.loki, inner) as c:
        with pytest.raises(SourceUnavailable.__mro__[1]) as info:  # SourceError
            await get(c, "loki", "/big", max_bytes=1024)
    assert info.value.truncated and "larger than 1024 bytes" in str(info.value)


async def test_breaker_counts_requests_not_retry_attempts() -> None:
    """Found by the fault matrix: two lookups × three attempts opened the breaker mid-correlation,
    and the answer said 'circuit open' instead of naming the 500. A retried request is one failure."""
    inner, seen = scripted(503)
    breaker = CircuitBreaker(failure_threshold=2, reset_seconds=60)
    async with client(inner, attempts=3, breaker=breaker) as c:
        assert (await c.get("/x")).status_code == 503
        assert len(seen) == 3 and breaker.state == "closed"
        assert (await c.get("/x")).status_code == 503
        assert breaker.state == "open"

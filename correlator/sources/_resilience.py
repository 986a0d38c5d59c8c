"""Retries and a circuit breaker around each backend's sends (an httpx transport, and our own client, _wire.py).

Living under the client means every source gets them without knowing: a GET that fails to
connect, or answers 5xx or 429, is retried with exponential backoff and full jitter
(honouring `Retry-After`), but never past the deadline of the correlation it serves
(`deadline` context variable, set by the orchestrator). A backend that keeps failing opens
its breaker: further requests fail at once (~0 ms) until a half-open probe succeeds.

Hand-written rather than tenacity + a breaker library: the two must share one notion of
"failure" and one deadline, and Retry-After parsing has to sit inside the wait; the whole
thing is smaller than the glue those libraries would need.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

__all__ = ["BreakerOpen", "CircuitBreaker", "Resilience", "ResilientTransport", "RetryPolicy", "deadline"]

A = TypeVar("A")  # an answer: httpx.Response or aiohttp.ClientResponse

# Monotonic time by which the current correlation must be answered; None = no bound.
deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("correlator_deadline", default=None)

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})  # 501: "not implemented" never changes
_IDEMPOTENT = frozenset({"GET", "HEAD"})


class BreakerOpen(httpx.ConnectError):
    """Raised instead of calling a backend whose breaker is open (mapped to `unavailable`)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3  # total tries, first included
    base_seconds: float = 0.05
    max_seconds: float = 1.0

    def backoff(self, attempt: int) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(max, base·2^attempt)]."""
        return random.uniform(0, min(self.max_seconds, self.base_seconds * 2**attempt))


class CircuitBreaker:
    """closed → (failures ≥ threshold) → open → (reset elapsed) → half-open → one probe decides."""

    def __init__(self, failure_threshold: int = 5, reset_seconds: float = 10.0, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self.reset_seconds else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._probing:
            self._probing = True  # exactly one probe at a time
            return True
        return False

    def success(self) -> None:
        self._failures, self._opened_at, self._probing = 0, None, False

    def failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
        self._probing = False


def retry_after_seconds(response: httpx.Response | str | None) -> float | None:
    """Seconds a `Retry-After` value (or a response carrying one) asks to wait; None if absent or unreadable."""
    value = response.headers.get("Retry-After") if isinstance(response, httpx.Response) else response
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Resilience:
    """The retry policy and the breaker around any client's send: the httpx transport below, and
    our own client (`_wire.WireGet`) that production GETs take. One loop, so both
    share one notion of failure, one deadline and one `Retry-After` reading."""

    def __init__(self, policy: RetryPolicy, breaker: CircuitBreaker | None) -> None:
        self.policy = policy
        self.breaker = breaker

    async def send(self, attempt: Callable[[], Awaitable[A]], status: Callable[[A], int],
                   retry_after: Callable[[A], str | None], discard: Callable[[A], Awaitable[None]],
                   retryable: bool = True, request: httpx.Request | None = None) -> A:
        """`attempt()` until an answer is final. Connect failures and 5xx/429 answers are retried
        (`retryable`: idempotent requests only); other transport errors are final."""
        # The breaker counts requests, not attempts: one request retried three times is one
        # failure, so a single bad answer cannot open the breaker halfway through a correlation.
        tries = 0
        if self.breaker is not None and not self.breaker.allow():
            raise BreakerOpen(f"circuit open after repeated failures (retrying in ≤{self.breaker.reset_seconds:.0f}s)",
                              request=request)
        while True:
            try:
                answer = await attempt()
            except (httpx.ConnectError, httpx.ConnectTimeout):
                wait = self._next_wait(retryable, tries, None)
                if wait is None:
                    self._record(False)
                    raise
                await asyncio.sleep(wait)
                tries += 1
                continue
            except (httpx.TransportError, asyncio.CancelledError):
                # Read timeouts and cancellations by the deadline count against the backend:
                # a backend that never answers in time must open its breaker too.
                self._record(False)
                raise
            code = status(answer)
            if code >= 500 or code == 429:
                wait = self._next_wait(retryable and code in _RETRY_STATUSES, tries, retry_after_seconds(retry_after(answer)))
                if wait is None:
                    self._record(code == 429)  # 429 is the backend working as designed
                    return answer
                await discard(answer)
                await asyncio.sleep(wait)
                tries += 1
                continue
            self._record(True)
            return answer

    def _record(self, ok: bool) -> None:
        if self.breaker is not None:
            self.breaker.success() if ok else self.breaker.failure()

    def _next_wait(self, retryable: bool, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before the next try, or None when there must be no next try."""
        if not retryable or attempt + 1 >= self.policy.attempts:
            return None
        wait = retry_after if retry_after is not None else self.policy.backoff(attempt)
        limit = deadline.get()
        # Leave room for the retry itself: a wait that eats the deadline buys nothing.
        if limit is not None and time.monotonic() + wait + 0.01 >= limit:
            return None
        return wait


def _status(response: httpx.Response) -> int:
    return response.status_code


def _retry_after(response: httpx.Response) -> str | None:
    value: str | None = response.headers.get("Retry-After")
    return value


async def _discard(response: httpx.Response) -> None:
    await response.aclose()


class ResilientTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, policy: RetryPolicy, breaker: CircuitBreaker | None,
                 resilience: Resilience | None = None) -> None:
        self._inner = inner
        # `resilience`: shared with our own client (_wire.py) of the same backend (one breaker per backend).
        self.resilience = resilience or Resilience(policy, breaker)
        self.breaker = self.resilience.breaker

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.resilience.send(lambda: self._inner.handle_async_request(request), _status, _retry_after, _discard,
                                          request.method in _IDEMPOTENT, request)

    async def aclose(self) -> None:
        await self._inner.aclose()

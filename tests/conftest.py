"""Test-wide helpers: where the fixtures live (inside the repository), CI detection, Hypothesis profiles."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

# `backends` / `make_client`: the app over counted mock backends, for any test module.
pytest_plugins = ["tests.apiclient"]

REPO = Path(__file__).resolve().parents[1]
# Recorded answers of real servers and upstream samples, with their origin and licence: tests/fixtures/README.md
FIXTURES = REPO / "tests" / "fixtures"

# "ci" keeps the suite fast; "nightly" is the ≥10,000-case run (HYPOTHESIS_PROFILE=nightly).
settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# "dev" is also what tests/stack/test_standalone.py runs the clone's unit tests with: too_slow (the time to generate
# the first examples) is the machine's speed, not a finding, there as in "ci".
settings.register_profile("dev", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def in_ci() -> bool:
    """In CI a missing real server is a failure, not a skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing real server is a failure)")
    pytest.skip(reason)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's chromium under Playwright (tests/browser.py); a skip locally, a failure in CI, when absent."""
    from tests.browser import launched

    async with launched() as launched_browser:
        yield launched_browser


_OPEN_CLIENTS: list[httpx.AsyncClient] = []


def closed_after_test(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client a test helper builds outside `async with`: closed when the test ends (its pool holds sockets)."""
    _OPEN_CLIENTS.append(client)
    return client


@pytest.fixture(autouse=True)
async def _close_test_clients() -> AsyncIterator[None]:
    yield
    while _OPEN_CLIENTS:
        await _OPEN_CLIENTS.pop().aclose()

"""Schemathesis against the served /openapi.json: no route answers 5xx or breaks its own schema."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.test_api_fuzz import LiveApp


@pytest.fixture(scope="module")
def live() -> Iterator[LiveApp]:
    app = LiveApp()
    yield app
    app.close()


def test_every_operation_against_its_schema(live: LiveApp) -> None:
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{live.port}/openapi.json")
    failures: list[str] = []
    calls: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=f"http://127.0.0.1:{live.port}", timeout=10)
            calls.append(response.status_code)
            # 5xx never; every answer carries the content type the schema promises for it.
            case.validate_response(response, checks=[schemathesis.checks.not_a_server_error])

        try:
            check()
        except Exception as exc:  # collect all operations' failures, not just the first
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:400]}")
    assert failures == []
    assert len(calls) >= 50 and 400 in calls and 200 in calls  # it really ran, valid and invalid

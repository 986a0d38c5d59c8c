from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.servers import Jaeger, Prometheus, jaeger_server, prometheus_server


@pytest.fixture(scope="session")
def prometheus() -> Iterator[Prometheus]:
    with prometheus_server() as server:
        yield server


@pytest.fixture(scope="session")
def jaeger() -> Iterator[Jaeger]:
    with jaeger_server() as server:
        yield server

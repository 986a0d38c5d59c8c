"""The investigate benchmarks in quick mode, so they cannot rot (figures come from full runs)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.integration.servers import jaeger_binary, prometheus_binary


@pytest.mark.integration
def test_the_investigate_benchmarks_run() -> None:
    rss = subprocess.run([sys.executable, "bench/bench_investigate.py", "rss"], cwd=REPO, capture_output=True, text=True,
                         timeout=180)
    assert rss.returncode == 0, rss.stderr[-2000:]
    assert "20 traces, 20000 spans in all, 20 read" in rss.stdout and "peak RSS" in rss.stdout
    if not (jaeger_binary() and prometheus_binary()):
        pytest.skip("cost needs the real Jaeger and Prometheus")
    cost = subprocess.run([sys.executable, "bench/bench_investigate.py", "cost", "--quick"], cwd=REPO, capture_output=True,
                          text=True, timeout=180)
    assert cost.returncode == 0, cost.stderr[-2000:]
    assert "prometheus 2, jaeger 20, loki 4" in cost.stdout and "prometheus 2, jaeger 20, loki 2" in cost.stdout

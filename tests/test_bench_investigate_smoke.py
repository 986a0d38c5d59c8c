"""The investigate benchmarks in quick mode, so they cannot rot (figures come from full runs)."""

from __future__ import annotations

import re
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
    counts = [tuple(map(int, m)) for m in re.findall(r"prometheus (\d+), jaeger (\d+), loki (\d+)", cost.stdout)]
    # Per strategy: 2 exemplar queries; 20 trace fetches (+ the untraced lookups' searches, per trace);
    # the Loki pairs (+ one untraced lookup per trace found): services 4 + 19, static 2 + 19.
    assert [(p, j >= 20, loki) for p, j, loki in counts] == [(2, True, 23), (2, True, 21)], cost.stdout

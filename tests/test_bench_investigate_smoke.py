"""The investigate benchmarks in quick mode, so they cannot rot (figures come from full runs)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.integration.servers import jaeger_binary, prometheus_binary

# Only against a hang: a quick run took up to 85 s (P8) on this machine at load ~26, and a slower or busier one
# takes a multiple of that (180 s left no room for 3x).
BENCH_TIMEOUT_S = 600


@pytest.mark.integration
def test_the_investigate_benchmarks_run() -> None:
    rss = subprocess.run([sys.executable, "bench/bench_investigate.py", "rss"], cwd=REPO, capture_output=True, text=True,
                         timeout=BENCH_TIMEOUT_S)
    assert rss.returncode == 0, rss.stderr[-2000:]
    assert "20 traces, 20000 spans in all, 20 read" in rss.stdout and "peak RSS" in rss.stdout
    if not (jaeger_binary() and prometheus_binary()):
        pytest.skip("cost needs the real Jaeger and Prometheus")
    cost = subprocess.run([sys.executable, "bench/bench_investigate.py", "cost", "--quick"], cwd=REPO, capture_output=True,
                          text=True, timeout=BENCH_TIMEOUT_S)
    assert cost.returncode == 0, cost.stderr[-2000:]
    counts = [tuple(map(int, m)) for m in re.findall(r"prometheus (\d+), jaeger (\d+), loki (\d+)", cost.stdout)]
    # Per strategy: 2 exemplar queries; 20 trace fetches (+ the untraced lookups' shared searches: one per
    # service and joint window); the Loki pairs + the untraced lookups, shared per service set and joint
    # window (untraced_share.clusters): services 4 + 7; static 2 + 2 (asked beside Jaeger over the hints, and once more
    # for the slow traces that reach past the early window; the bench fixes `now` to whole seconds for this).
    assert [(p, j >= 20, loki) for p, j, loki in counts] == [(2, True, 11), (2, True, 4)], cost.stdout

"""The benchmarks in --quick mode, so they cannot rot (figures come from full runs, not from here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import CHROMIUM
from tests.conftest import REPO
from tests.integration.servers import jaeger_binary, prometheus_binary

# Only against a hang: a quick run took up to 85 s (P8) on this machine at load ~26, and a slower or busier one
# takes a multiple of that (180 s left no room for 3x).
BENCH_TIMEOUT_S = 600


@pytest.mark.integration
def test_every_benchmark_runs_in_quick_mode() -> None:
    figures = ["p2", "p4", "p3", "soak", "flood", "p8"] + (["p1"] if jaeger_binary() and prometheus_binary() else []) + (
        ["page"] if Path(CHROMIUM).exists() else [])
    for figure in figures:
        result = subprocess.run([sys.executable, "bench/run.py", figure, "--quick"], cwd=REPO, capture_output=True,
                                text=True, timeout=BENCH_TIMEOUT_S)
        assert result.returncode == 0, result.stderr[-2000:]
        assert figure.upper() in result.stdout, result.stdout
        if figure in ("p3", "soak"):
            statuses = re.search(r"statuses \{([^}]*)\}", result.stdout)
            assert "errors 0" in result.stdout and statuses is not None, result.stdout
            assert all(code.strip().startswith("2") for code, _n in re.findall(r"(\d+):\s*(\d+)", statuses.group(1))), result.stdout
        if figure == "flood":  # the bulkhead held: no backend saw more queries at once than its cap
            assert "✓" in result.stdout and "OVER THE CAP" not in result.stdout, result.stdout
        if figure == "p8":
            assert "P5" in result.stdout and "'500'" not in result.stdout, result.stdout


@pytest.mark.integration
@pytest.mark.parametrize("floor", ["aiohttp", "correlator-client"])
def test_the_p3_floors_run_in_quick_mode(floor: str) -> None:
    """P3's yardstick and our client stack on the same four calls (docs/performance-p3.md)."""
    result = subprocess.run([sys.executable, "bench/run.py", "p3", "--floor", floor, "--quick"], cwd=REPO, capture_output=True,
                            text=True, timeout=BENCH_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"P3 floor {floor}" in result.stdout and "errors 0" in result.stdout, result.stdout
    assert "server CPU per request" in result.stdout, result.stdout

"""promtool on the shipped Prometheus config and the seed's alert (Debian's prometheus 2.42)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, skip_or_fail

RULES = REPO / "stack/prometheus/rules"


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        skip_or_fail("promtool is not installed (Debian package prometheus)")
    return str(path)


def run(*args: str, cwd: Path = REPO) -> str:
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_config_is_valid(promtool: str, tmp_path: Path) -> None:
    """The shipped file, with only the rules path adapted to where the repo is."""
    text = (REPO / "stack/prometheus/prometheus.yml").read_text().replace("/etc/prometheus/rules", str(RULES))
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    out = run(promtool, "check", "config", str(config))
    assert "SUCCESS" in out and "1 rules found" in out


def test_rules_are_valid(promtool: str) -> None:
    assert "SUCCESS: 1 rules found" in run(promtool, "check", "rules", str(RULES / "trace-alerts.yml"))


def test_alert_fires_and_does_not_fire(promtool: str) -> None:
    """3 s requests on nextgen-api fire after 5 m; 50 ms course-service and slow client spans never do."""
    assert "SUCCESS" in run(promtool, "test", "rules", "trace-alerts.test.yml", cwd=RULES.parent / "tests")

"""`correlator slow` against a real Prometheus: where a newcomer finds a trace ID worth correlating."""

from __future__ import annotations

import pytest

from correlator.cli import EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_OK, main
from tests.integration.servers import Prometheus

pytestmark = pytest.mark.integration


def test_lists_the_exemplar_traces_and_how_to_correlate_one(prometheus: Prometheus, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRELATOR_PROMETHEUS_URL", prometheus.url)
    assert main(["slow", "--since", "1h"]) == EXIT_OK
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line[:1].isalnum() and not line.startswith("correlate")]
    assert "4bf92f3577b34da6a3ce929d0e0e4736" in listed
    assert "00000000000000007b4c2d9e1f3a5b6c" in listed  # the 16-char ID, normalised
    assert len(listed) == len(set(listed))  # one row per trace
    assert f"correlate one: correlator correlate {listed[0]}" in out
    assert "http_server_duration_seconds_bucket{" in out


def test_bad_promql_and_empty_windows_say_what_to_do(prometheus: Prometheus, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRELATOR_PROMETHEUS_URL", prometheus.url)
    assert main(["slow", "rate(", "--since", "1h"]) == EXIT_BAD_INPUT
    assert "prometheus" in capsys.readouterr().err.lower()
    assert main(["slow", '{__name__="no_such_metric_bucket"}', "--since", "1h"]) == EXIT_NOT_FOUND
    assert "no exemplars for" in capsys.readouterr().out
    assert main(["slow", "--since", "forever"]) == EXIT_BAD_INPUT

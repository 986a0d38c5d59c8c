"""The command line as a newcomer meets it: help that explains, exit codes that mean one thing,
--config anywhere, a busy port in one line, backends probed at once, an unreachable Jaeger named."""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from correlator import __version__
from correlator.cli import EXIT_BAD_INPUT, EXIT_CANNOT_SERVE, EXIT_NOT_FOUND, EXIT_PARTIAL, _parser, main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's --help / --version / usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_is_a_users_description_with_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert out.splitlines()[2].startswith("Give it a trace ID")
    assert "exit codes:" in out and "4  serve: cannot listen" in out
    for command in ("serve", "correlate", "provision", "check"):
        assert f"    {command}" in out


def test_every_argument_has_help() -> None:
    parser = _parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.dest} has no help"
        assert "exit codes:" in sub.format_help()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"correlator {__version__}"


@pytest.mark.parametrize("order", ["before", "after"])
def test_config_before_or_after_the_command(capsys: pytest.CaptureFixture[str], tmp_path: Path, order: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("loki:\n  max_lines: 6000\n")
    argv = ["--config", str(config), "check"] if order == "before" else ["check", "--config", str(config)]
    code, _, err = run(capsys, *argv)
    assert code == EXIT_BAD_INPUT and "loki.max_lines=6000" in err


def test_serve_on_a_busy_port_is_one_line_and_its_own_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run(capsys, "serve", "--host", "127.0.0.1", "--port", str(port))
    assert code == EXIT_CANNOT_SERVE != EXIT_NOT_FOUND
    assert err.strip() == f"correlator: port {port} is in use on 127.0.0.1; pick another with --port"
    assert out == ""


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """Accepts connections and never answers: a backend that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_probes_the_backends_at_once(capsys: pytest.CaptureFixture[str], hanging_port: int,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Three hanging backends cost one budget, not three (was 16.6 s with one hanging)."""
    for name in ("JAEGER", "LOKI", "PROMETHEUS"):
        monkeypatch.setenv(f"CORRELATOR_{name}_URL", f"http://127.0.0.1:{hanging_port}")
        monkeypatch.setenv(f"CORRELATOR_{name}_RETRY_ATTEMPTS", "1")
    monkeypatch.setenv("CORRELATOR_DEADLINE_SECONDS", "1")
    started = time.monotonic()
    code, out, _ = run(capsys, "check")
    elapsed = time.monotonic() - started
    assert code == EXIT_NOT_FOUND
    assert out.count("NOT ready") == 3 and "no answer within 1s" in out
    assert elapsed < 2.5, f"probes ran one after another ({elapsed:.1f}s for a 1 s budget each)"


def test_correlate_says_jaeger_could_not_be_asked(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    for name in ("JAEGER", "LOKI", "PROMETHEUS"):
        monkeypatch.setenv(f"CORRELATOR_{name}_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv(f"CORRELATOR_{name}_RETRY_ATTEMPTS", "1")
    code, out, _ = run(capsys, "correlate", "4bf92f3577b34da6a3ce929d0e0e4736")
    assert code == EXIT_PARTIAL
    header = out.splitlines()[1]
    assert header.startswith("Jaeger could not be asked (unavailable") and "not found" not in header
    assert "Note: Jaeger, Loki and Prometheus could not be asked" in out


def test_bad_trace_id_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "correlate", "not-a-trace")
    assert code == EXIT_BAD_INPUT and err.startswith("correlator: ")

"""demo/native.Stack, the part of scripts/demo that starts and stops processes, on real processes:
a piece that dies at start is named with its log, and a stop leaves nothing behind, not even a
grandchild that ignores SIGTERM."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from demo.native import Service, Stack, StackError

PY = sys.executable


def exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_piece_that_dies_at_start_is_named_with_its_exit_code_and_log(tmp_path: Path) -> None:
    crash = Service("prometheus", (PY, "-c", "print('opening storage: permission denied'); raise SystemExit(3)"),
                    ready=lambda: False, env=dict(os.environ))
    with Stack(tmp_path / "logs") as stack, pytest.raises(StackError) as failed:
        stack.start(crash)
    message = str(failed.value)
    assert "prometheus exited with code 3 before it was ready" in message
    assert str(tmp_path / "logs/prometheus.log") in message
    assert "opening storage: permission denied" in message  # the log's end, so the cause is on screen


def test_a_piece_that_never_gets_ready_is_named_with_its_url_and_stopped(tmp_path: Path) -> None:
    hang = Service("jaeger", (PY, "-c", "import time; print('waiting for storage'); time.sleep(60)"), ready=lambda: False,
                   url="http://127.0.0.1:1/", env=dict(os.environ), start_timeout=1.0)
    stack = Stack(tmp_path / "logs")
    with pytest.raises(StackError, match=r"jaeger was not ready at http://127.0.0.1:1/ within 1 s; its log, .*jaeger\.log"):
        stack.start(hang)
    pid = stack.pids()[0]
    stack.stop()
    assert not exists(pid)


def test_stop_takes_the_whole_process_group_even_a_grandchild_that_ignores_sigterm(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    # The grandchild says where it is only once it ignores SIGTERM (its file appears whole, by a rename): a fixed
    # wait instead was a race with its interpreter's start (0.25-0.7 s on a busy machine).
    grandchild_code = ("import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                       f"open({str(pid_file) + '.new'!r}, 'w').write(str(os.getpid())); "
                       f"os.rename({str(pid_file) + '.new'!r}, {str(pid_file)!r}); time.sleep(60)")
    stubborn = ("import subprocess, sys, time\n"
                f"subprocess.Popen([sys.executable, '-c', {grandchild_code!r}])\n"
                "time.sleep(60)\n")
    service = Service("node", (PY, "-c", stubborn), ready=pid_file.exists, env=dict(os.environ), stop_grace=0.5)
    stack = Stack(tmp_path / "logs")
    leader = stack.start(service).pid
    grandchild = int(pid_file.read_text())
    assert exists(grandchild)
    [stopped] = stack.stop()
    assert stopped.name == "node" and stopped.killed  # SIGTERM was not enough: SIGKILL after the grace
    assert not exists(leader) and not exists(grandchild)


def test_telemetry_senders_stop_before_the_backends_they_send_to(tmp_path: Path) -> None:
    def service(name: str, backend: bool) -> Service:
        return Service(name, (PY, "-c", "import time; time.sleep(60)"), ready=lambda: True, env=dict(os.environ), backend=backend)

    with Stack(tmp_path / "logs") as stack:
        for s in (service("jaeger", True), service("prometheus", True), service("nextgen-api", False), service("correlator", False)):
            stack.start(s)
        order = [s.name for s in stack.stop()]
    assert order == ["nextgen-api", "correlator", "jaeger", "prometheus"]

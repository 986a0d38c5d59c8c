"""scripts/demo run as a user runs it: it starts the stack, prints the URLs and a real trace ID,
the correlator it started answers for that ID, and Ctrl-C (SIGINT) leaves no process and no
port behind. And a port already taken stops it before anything starts, naming the port."""

from __future__ import annotations

import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from demo.native import Ports, find_binaries, ports_in_use
from tests.conftest import REPO, skip_or_fail

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 240  # cold start + the first exemplar and its whole trace (~20 s here); loaded CI machines
STOP_TIMEOUT_S = 60


def require_prerequisites() -> None:
    binaries = find_binaries()
    if binaries.jaeger is None or binaries.prometheus is None or binaries.node is None:
        skip_or_fail("scripts/demo needs jaeger (scripts/install-jaeger), prometheus and node")
    if not (REPO / "demo/nextgen-api/node_modules").is_dir():
        skip_or_fail("demo/nextgen-api/node_modules missing (npm ci)")


def free_offset() -> int:
    """A --port-offset whose every port is free, so the test never meets a stack already on the compose ports."""
    candidates = list(range(20_000, 48_000, 700))
    random.shuffle(candidates)
    for offset in candidates:
        if not ports_in_use(Ports().shifted(offset).items()):
            return offset
    raise AssertionError("no port offset with all ports free")


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    lines: queue.Queue[str]
    output: list[str]

    def read_until(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r} (exit code {self.proc.poll()}); output:\n" + "".join(self.output))


@pytest.fixture
def run_demo() -> Iterator[Callable[..., Demo]]:
    started: list[Demo] = []

    def run(*args: str) -> Demo:
        proc = subprocess.Popen([sys.executable, str(REPO / "scripts/demo"), "--no-build", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, cwd=REPO)
        lines: queue.Queue[str] = queue.Queue()
        output: list[str] = []

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                output.append(line)
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        demo = Demo(proc, lines, output)
        started.append(demo)
        return demo

    yield run
    for demo in started:  # a failed test must not leave a stack running: SIGTERM is scripts/demo's own clean stop
        if demo.proc.poll() is None:
            demo.proc.terminate()
            try:
                demo.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                demo.proc.kill()
                demo.proc.wait()
        if demo.proc.stdout:
            demo.proc.stdout.close()


def descendants(root: int) -> dict[int, str]:
    """pid → start time (field 22 of /proc/PID/stat) of every process below root, so a pid reused
    later is not mistaken for a survivor."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
        parents[int(entry.name)] = (int(fields[1]), fields[19])
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, start) in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = start
                frontier.append(pid)
    return found


def alive(pid: int, start: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19] == start and fields[0] != "Z"


def test_demo_starts_the_stack_answers_a_real_trace_and_stops_everything_on_ctrl_c(run_demo: Callable[..., Demo]) -> None:
    require_prerequisites()
    offset = free_offset()
    ports = Ports().shifted(offset)
    demo = run_demo("--port-offset", str(offset), "--rate", "10")

    correlator = demo.read_until(r"^\s+correlator\s+(http://127\.0\.0\.1:\d+)", START_TIMEOUT_S).group(1)
    assert correlator == f"http://127.0.0.1:{ports.correlator}"
    trace_id = demo.read_until(r"trace ID\s+([0-9a-f]{32})\b", START_TIMEOUT_S).group(1)
    command = demo.read_until(r"correlator correlate (\S+)$", 5)
    assert command.group(1) == trace_id
    assert f"CORRELATOR_JAEGER_URL=http://127.0.0.1:{ports.jaeger_query}" in command.string  # the offset stack, not the default
    output = "".join(demo.output)
    for name in ("jaeger", "prometheus", "auth-service", "course-service", "nextgen-api", "loadgen"):
        assert re.search(rf"^\s+{name}\s", output, re.M), f"{name} missing from the table:\n{output}"
    children = descendants(demo.proc.pid)
    assert len(children) >= 7  # jaeger, prometheus, 2 Python services, node, correlator, loadgen

    assert httpx.get(f"{correlator}/healthz", timeout=5).status_code == 200
    answer = httpx.get(f"{correlator}/correlate/{trace_id}", timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["sources"]["jaeger"]["status"] == "ok" and body["sources"]["prometheus"]["status"] == "ok"
    if "skipping loki" in output:  # no loki binary: the correlator says Loki could not be asked, and still answers
        assert body["sources"]["loki"]["status"] in ("unavailable", "error")
    assert {"nextgen-api", "auth-service", "course-service"} <= set(body["summary"]["services"])
    # The exemplar the ID came from, attached to course-service's span.
    spans = {s["span_id"]: s for s in body["spans"]}
    assert any(ex["metric"] == "http_server_duration_seconds_bucket" and ex["series"].get("route") == "/courses"
               and spans[ex["span_id"]]["service"] == "course-service" for ex in body["exemplars"] if ex.get("span_id") in spans)

    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(STOP_TIMEOUT_S) == 0
    demo.read_until(r"stopped everything; logs kept in (\S+)", 5)
    survivors = {pid for pid, start in children.items() if alive(pid, start)}
    assert not survivors, f"still running after Ctrl-C: {survivors}"
    needed = [(n, p) for n, p in ports.items() if not n.startswith("loki") and n != "grafana"]
    assert not ports_in_use(needed)


def test_a_port_in_use_stops_the_demo_before_anything_starts(run_demo: Callable[..., Demo]) -> None:
    require_prerequisites()
    offset = free_offset()
    ports = Ports().shifted(offset)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports.prometheus))
        holder.listen()
        demo = run_demo("--port-offset", str(offset))
        assert demo.proc.wait(30) == 2
        demo.read_until(rf"port {ports.prometheus} \(prometheus\) is in use", 5)
        assert "--port-offset" in "".join(demo.output)
        assert "starting" not in "".join(demo.output)

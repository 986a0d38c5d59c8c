"""Real backends for the integration tests: Debian's Prometheus and a Go-built Jaeger v2.

Each starts on free loopback ports with a temp dir, waits until it answers (bounded), and
stops at the end. A missing binary skips locally and fails in CI (`CI=true`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = log.read_text(errors="replace")[-2000:] if log else ""
            raise RuntimeError(f"{what}: process exited with {proc.returncode}: {out}")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not ready within {timeout}s")


@contextmanager
def running(cmd: list[str], what: str, ready: Callable[[], bool], timeout: float = 30, grace: float = 10,
            **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    # Output goes to a file, not a pipe: an unread pipe fills up and the server then blocks on a
    # log write — it could not even shut down on SIGTERM.
    with tempfile.NamedTemporaryFile(prefix=f"{what.replace(' ', '-')}-", suffix=".log") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
        try:
            wait_until(ready, timeout, what, proc, Path(log.name))
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ------------------------------------------------------------------------------ Jaeger v2


class Jaeger(Protocol):
    """What the tests use of a running Jaeger (jaeger_server.JaegerServer has these and more)."""

    query_url: str
    otlp_url: str  # OTLP/HTTP base, e.g. http://127.0.0.1:4318


def jaeger_binary() -> Path | None:
    """One lookup for everyone (jaeger_server.py imports this module, hence the late import)."""
    from tests.integration.jaeger_server import jaeger_binary as find

    return find()


@contextmanager
def jaeger_server() -> Iterator[Jaeger]:
    """The one launcher is jaeger_server.run_jaeger (a late import: that module imports this one)."""
    from tests.integration.jaeger_server import run_jaeger

    with run_jaeger() as server:
        yield server


# ------------------------------------------------------------------------------ Prometheus


@dataclass(frozen=True)
class Prometheus:
    url: str
    exposer_url: str
    trace_ids: dict[str, str]  # name → trace ID as the exposer writes it in the exemplar
    span_ids: dict[str, str]  # name → span ID of the exemplar, where chosen


def prometheus_binary() -> str | None:
    return os.environ.get("CORRELATOR_PROMETHEUS_BIN") or shutil.which("prometheus")


@contextmanager
def prometheus_server(trace_ids: dict[str, str] | None = None) -> Iterator[Prometheus]:
    """A real Prometheus scraping a real process whose histogram carries these trace IDs as exemplars."""
    # The one Prometheus launcher is prometheus_server.prometheus_scraping (a late import: that
    # module imports this one).
    from tests.integration.prometheus_server import prometheus_scraping

    trace_ids = trace_ids or {
        "courses": "4bf92f3577b34da6a3ce929d0e0e4736",  # the recorded Loki scenario's trace
        "legacy": "7b4c2d9e1f3a5b6c",  # a 64-bit ID written in its 16-char form
    }
    span_ids = {"courses": "00f067aa0ba902b7"}  # the scenario's gateway span
    exposer_port = free_port()
    env = {**os.environ, "EXPOSER_PORT": str(exposer_port),
           "EXPOSER_TRACES": ",".join(f"{k}={v}" + (f"/{span_ids[k]}" if k in span_ids else "") for k, v in trace_ids.items())}
    exposer_url = f"http://127.0.0.1:{exposer_port}"
    with running([sys.executable, str(HERE / "exemplar_app.py")], "exemplar exposer",
                 lambda: httpx.get(f"{exposer_url}/metrics", timeout=1).status_code == 200, env=env), \
            prometheus_scraping(f"127.0.0.1:{exposer_port}", job="demo") as url:
        def scraped() -> bool:
            body = httpx.get(f"{url}/api/v1/query_exemplars",
                             params={"query": '{job="demo"}', "start": time.time() - 600, "end": time.time() + 60},
                             timeout=2).json()
            found = {ex["labels"].get("trace_id") for series in body.get("data") or () for ex in series["exemplars"]}
            return set(trace_ids.values()) <= found
        wait_until(scraped, 30, "exemplars scraped")
        yield Prometheus(url, exposer_url, trace_ids, span_ids)

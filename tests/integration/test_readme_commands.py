"""Every command the README shows runs here as written, unless it needs Docker or minutes.

The commands are read from the README's ```sh blocks, so the README cannot drift from what
works: a new command either runs green here or is added to NOT_RUN with the reason. The
first screen's `correlator slow` → `correlator correlate <trace-id>` runs against the real
Prometheus and Jaeger the integration tests start (Loki: the recorded-answer fake).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.fakes.loki import make_fake_loki_app, scenario
from tests.integration.servers import Jaeger, Prometheus, free_port

pytestmark = pytest.mark.integration
SC = scenario()

# Command prefix → why it is not run here (each must still match a README command).
NOT_RUN = {
    "docker compose": "needs a Docker engine; the compose file is validated statically in tests/stack/test_compose.py",
    "scripts/test": "is the test suite itself",
    "pip install": "installs packages; scripts/test installs the same project into its venv",
    "python bench/run.py": "minutes-long benchmarks; their --quick smoke runs in tests/test_bench_smoke.py",
    "HYPOTHESIS_PROFILE=nightly": "the 10,000-case property run, minutes long; the same tests run at 150 cases",
    ". .venv/bin/activate": "changes the calling shell only",
    "scripts/demo": "runs until Ctrl-C; tests/stack/test_demo_script.py runs it for real and stops it",
}


def readme_commands() -> list[str]:
    """Each shell command of the README's sh blocks: comments dropped, continuations joined."""
    text = (REPO / "README.md").read_text()
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            command = re.split(r"\s{2,}#|\s#\s", line, maxsplit=1)[0].strip()
            if command:
                commands.extend(part.strip() for part in command.split(" ; "))
    return commands


COMMANDS = readme_commands()


def reason_not_run(command: str) -> str | None:
    return next((why for prefix, why in NOT_RUN.items() if command.startswith(prefix)), None)


def test_the_readme_shows_commands_and_the_skip_list_matches_them() -> None:
    assert "docker compose up -d" in COMMANDS and "scripts/test" in COMMANDS
    for prefix in NOT_RUN:
        assert any(c.startswith(prefix) for c in COMMANDS), f"NOT_RUN lists {prefix!r}, which the README no longer shows"


async def run(command: str, env: dict[str, str], timeout: float = 300) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_shell(command, cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def serve_and_probe(command: str, env: dict[str, str]) -> None:
    """A `correlator serve` command as written, on a free port: it says where it listens and answers."""
    port = free_port()
    command = re.sub(r"--port \d+", f"--port {port}", command)
    proc = await asyncio.create_subprocess_shell(command, cwd=REPO, env=env, stderr=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.DEVNULL, start_new_session=True)
    try:
        assert proc.stderr is not None
        first = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert f"listening on http://127.0.0.1:{port}" in first.decode(), first
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    finally:
        os.killpg(proc.pid, 15)
        await asyncio.wait_for(proc.wait(), 15)


async def test_every_readme_command_runs(jaeger: Jaeger, prometheus: Prometheus, t0: int, aiohttp_server: Any) -> None:
    loki = await aiohttp_server(make_fake_loki_app(shift_ns=t0 - SC["t0_unix_nano"]))
    bin_dir = str(Path(sys.executable).parent)  # `python`, `correlator`, `ruff`, `mypy` of this environment
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "CORRELATOR_JAEGER_URL": jaeger.query_url,
           "CORRELATOR_LOKI_URL": f"http://127.0.0.1:{loki.port}", "CORRELATOR_PROMETHEUS_URL": prometheus.url}
    ran, trace_id = [], None
    for command in COMMANDS:
        if reason_not_run(command):
            continue
        if "correlator serve" in command:
            await serve_and_probe(command, env)
        else:
            if "<trace-id>" in command:
                assert trace_id, "the README correlates a trace ID before showing where to get one"
                command = command.replace("<trace-id>", shlex.quote(trace_id))
            code, out = await run(command, env)
            assert code == 0, f"{command!r} exited {code}:\n{out[-3000:]}"
            if command.startswith("correlator slow"):
                trace_id = re.search(r"correlator correlate ([0-9a-f]{32})", out).group(1)  # type: ignore[union-attr]
            if "correlator correlate" in command:
                assert f"Trace {trace_id}" in out and "Sources:" in out
        ran.append(command)
    assert any(c.startswith("correlator correlate") for c in ran) and any("correlator serve" in c for c in ran)

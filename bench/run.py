"""Benchmarks, one subcommand per figure (issue 4). Ratios within one run; medians of repeats.

    python bench/run.py p1 [--quick]   correlate p50 ÷ slowest single backend call (real Prometheus + real Jaeger
                                        + recorded Loki with latency), with and without a hint; P1b naive ÷ ours
    python bench/run.py p2 [--quick]   whole pipeline (model parse + join + analysis + JSON render) ÷ orjson parse
                                        of the same bytes, at 1k/10k/100k spans, each stage's ms; peak RSS (P5)
    python bench/run.py p3 [--quick]   sustained load from a separate process: correlations/s, p50/p99, errors, RSS
    python bench/run.py p4 [--quick]   repeat correlation of a completed trace (cache hit): p50, backend calls
    python bench/run.py soak [--quick] P3 with faults in 10 % of backend answers: 5xx count, RSS and fds flat
    python bench/run.py p8 [--quick]   small correlations, /healthz, cache hits: p99 alone vs beside a 100k-span
                                        correlation, with the worker process and without; peak RSS (P5)
    python bench/run.py flood [--quick] unique IDs at 5× the sustainable rate: backend queries in flight vs the
                                        bulkhead caps, 503 latency, cache-hit and /healthz p99, recovery
    python bench/run.py page [--quick] the HTML page: render ÷ JSON render, gzipped bytes per span, Chromium
                                        time to interactive at 10k ÷ 1k spans (bench/page.py)
    python bench/run.py all --quick    the CI smoke: every figure, tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import gc
import hashlib
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from correlator.config import load_settings  # noqa: E402
from correlator.correlate import Correlator  # noqa: E402
from correlator.ids import parse_trace_id  # noqa: E402
from correlator.model import Window  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------ P2 / P5


def p2_size(spans: int, lines: int, exes: int, repeats: int) -> None:
    """One size, in its own process (peak RSS is per process): prints one table row."""
    from bench.fake_backends import exemplars, loki_streams, otlp_trace
    from correlator.gcpause import gc_paused
    from correlator.model import SourceReport, SourceStatus
    from correlator.render import correlation_body
    from correlator.sources import SourceResult
    from correlator.sources.jaeger import parse_otlp_answer
    from correlator.sources.loki import parse_streams_body
    from correlator.sources.prometheus import parse_exemplars

    settings = load_settings(environ={})
    correlator = Correlator(settings, None, None, None)  # type: ignore[arg-type]  # its pure assembly only
    tid = parse_trace_id("4bf92f3577b34da6a3ce929d0e0e4736")
    ok = SourceReport(SourceStatus.OK, 1.0)
    bodies = [otlp_trace(spans), loki_streams(lines), exemplars(exes)]
    parse_ms, model_ms, work_ms, render_ms, control_ms = [], [], [], [], []
    # One untimed round first: a fresh process's first rounds fault in the pages its allocator then reuses (the Loki
    # parse at 10k: 4.2k, 3.2k, 2.2k, 1.4k, then ~0.2k faults per round); a service is past that after its first
    # requests, so the figures are the steady state's (docs/performance-loki.md, session 9).
    for _ in range(repeats + 1):
        # The yardstick: orjson (C) parsing the same bodies into dicts, the collector paused.
        t = time.perf_counter()
        with gc_paused():
            raw = [orjson.loads(b) for b in bodies]
        parse_ms.append((time.perf_counter() - t) * 1000)
        del raw
        # What the service does with the bytes (the sources' parse functions), JSON decoding included.
        t = time.perf_counter()
        trace = parse_otlp_answer(bodies[0], tid.hex)
        logs, _ = parse_streams_body(bodies[1], settings.loki)
        with gc_paused():
            raw_exemplars = orjson.loads(bodies[2])
        found, _ = parse_exemplars(raw_exemplars, settings.prometheus.trace_id_labels, settings.prometheus.span_id_labels)
        model_ms.append((time.perf_counter() - t) * 1000)
        del raw_exemplars  # the service drops the parsed JSON once the model is built
        assert trace is not None
        # Join + analysis exactly as the service assembles a correlation (tree, join, error logs, detectors).
        t = time.perf_counter()
        outcome = correlator._assemble(tid, Window(trace.start_ns, trace.end_ns), (ok, SourceResult(trace)),
                                       (ok, SourceResult(tuple(logs))), (ok, SourceResult(tuple(found))))
        work_ms.append((time.perf_counter() - t) * 1000)
        # The response body, as api._respond renders it (the spans written natively when the extension is there).
        t = time.perf_counter()
        orjson.dumps(correlation_body(outcome, settings, spans_as_json=True, lines_as_json=True), option=orjson.OPT_NON_STR_KEYS)
        render_ms.append((time.perf_counter() - t) * 1000)
        # Control: the barest linear pass over the same spans (index by ID, look each parent up).
        # Its per-span cost grows with the input too (caches), which sets what "linear" can mean.
        t = time.perf_counter()
        with gc_paused():
            by_id = {span.span_id: span for span in trace.spans}
            sum(1 for span in trace.spans if span.parent_span_id in by_id)
        control_ms.append((time.perf_counter() - t) * 1000)
        del trace, logs, found, outcome, by_id
    pm, mm, wm, rm, cm = (statistics.median(v[1:]) for v in (parse_ms, model_ms, work_ms, render_ms, control_ms))
    whole = mm + wm + rm
    print(f"    {spans:>6} {lines:>6} {exes:>6}    | {pm:8.1f} | {mm:8.1f} | {wm:8.1f} | {rm:8.1f} | {whole:8.1f} | "
          f"{whole / pm:6.2f} | PEAK | {cm:.2f}")


def p2_peak(spans: int, lines: int, exes: int) -> None:
    """Peak RSS (MB) of one correlation's worth, in a fresh process, as the service holds it."""
    from bench.fake_backends import exemplars, loki_streams, otlp_trace
    from correlator.analysis import analyse
    from correlator.gcpause import gc_paused
    from correlator.join import join
    from correlator.sources.jaeger import parse_otlp_answer
    from correlator.sources.loki import parse_streams_body
    from correlator.sources.prometheus import parse_exemplars
    from correlator.spantree import build_tree

    settings = load_settings(environ={})
    bodies = [otlp_trace(spans), loki_streams(lines), exemplars(exes)]
    gc.collect()
    # Generating the bodies peaks higher than anything measured here: reset the peak (Linux ≥ 4.0).
    Path("/proc/self/clear_refs").write_text("5")
    # Peak memory of one correlation's worth, as the service holds it: every body from the start
    # (with a time hint the three answers arrive together), each until its model is built (any
    # parsed JSON with it), then the models through join and analysis.
    trace = parse_otlp_answer(bodies.pop(0), "4bf92f3577b34da6a3ce929d0e0e4736")
    logs = parse_streams_body(bodies.pop(0), settings.loki)[0]
    with gc_paused():
        raw = orjson.loads(bodies.pop(0))
    found = parse_exemplars(raw, settings.prometheus.trace_id_labels, settings.prometheus.span_id_labels)[0]
    del raw
    assert trace is not None
    with gc_paused():
        tree = build_tree(trace)
        join(tree, logs, found, settings.join.clock_skew_ms)
        analyse(tree, settings.analysis)
    hwm = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    print(f"{hwm / 1024:.0f}")


def p2(quick: bool) -> None:
    sizes = [(200, 1000, 40), (1000, 5000, 200)] if quick else [(1000, 5000, 200), (10_000, 50_000, 2000),
                                                                  (100_000, 2000, 20_000)]
    print("P2  spans   logs   exemplars | json ms  | model ms | join+an. | render   | whole ms | ÷json  | peak RSS MB "
          "| control ms")
    previous = None
    for spans, lines, exes in sizes:
        repeats = 3 if spans >= 100_000 else 7
        out = subprocess.run([sys.executable, __file__, "p2-size", str(spans), str(lines), str(exes), str(repeats)],
                             check=True, capture_output=True, text=True).stdout
        peak = subprocess.run([sys.executable, __file__, "p2-peak", str(spans), str(lines), str(exes)],
                              check=True, capture_output=True, text=True).stdout.strip()
        out = out.replace("PEAK", f"{peak:>11}")
        print(out.rstrip())
        whole, control = float(out.split("|")[5]), float(out.split("|")[8])
        if previous and lines == spans * 5:
            print(f"    scaling ×{spans / previous[0]:.0f} input → ×{whole / previous[1]:.1f} whole-pipeline time "
                  f"(control: ×{control / previous[2]:.1f})")
        if lines == spans * 5:
            previous = (spans, whole, control)
    if not quick:
        print("    (the last row is the service's own caps: jaeger.max_spans, loki.max_lines = 1000 per lookup × 2)")


# ------------------------------------------------------------------------------ P4


def p4(quick: bool) -> None:
    from tests.test_correlate import EXEMPLAR, LINES, NOW, TID, FakeJaeger, FakeLoki, FakePrometheus
    from tests.test_join import seed_trace

    async def main() -> None:
        c = Correlator(load_settings(environ={}), FakeJaeger(seed_trace()), FakeLoki(LINES), FakePrometheus([EXEMPLAR]),
                       wall_clock=lambda: NOW)
        await c.correlate(TID)
        calls = c.backend_calls
        times = []
        for _ in range(200 if quick else 5000):
            t = time.perf_counter()
            outcome = await c.correlate(TID)
            times.append((time.perf_counter() - t) * 1000)
            assert outcome.cached
        print(f"P4  cache hit (in-process): p50 {statistics.median(times):.4f} ms, p99 {pct(times, 0.99):.4f} ms, "
              f"backend calls during repeats: {c.backend_calls - calls}")

    asyncio.run(main())


# ------------------------------------------------------------------------------ P3


def _go_build(name: str) -> Path | None:
    """bench/NAME.go built once per content (cached by hash), or None without Go."""
    source = REPO / "bench" / f"{name}.go"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "correlator" / "bin"
    binary = cache / f"bench-{name}-{hashlib.sha256(source.read_bytes()).hexdigest()[:12]}"
    if not binary.exists() and shutil.which("go"):
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "build", "-o", str(binary), str(source)], check=True, cwd=REPO,
                       env={**os.environ, "GO111MODULE": "off"})
    return binary if binary.exists() else None


def _backends(port: int, latency_ms: int, fault_rate: float, big_spans: int = 0) -> subprocess.Popen[bytes]:
    """The Go backends when Go is here (they leave the CPU to the correlator), else the Python ones.

    `big_spans`: trace IDs starting `b16b16` get a trace of that many spans (Go backends only; P8)."""
    from bench.fake_backends import exemplars, loki_streams, otlp_trace

    binary = _go_build("backends")
    if binary is not None:
        templates = Path(tempfile.mkdtemp(prefix="bench-templates-"))
        for name, body in (("trace.json", otlp_trace(20)), ("logs.json", loki_streams(20)), ("exemplars.json", exemplars(2))):
            (templates / name).write_bytes(body)
        if big_spans:
            (templates / "trace_big.json").write_bytes(otlp_trace(big_spans))
        print(f"    backends: Go ({binary.name}), {latency_ms} ms latency")
        try:
            return _listening(subprocess.Popen([str(binary), str(port), str(latency_ms), str(templates), str(fault_rate)]), port)
        finally:
            atexit.register(shutil.rmtree, templates, True)
    print(f"    backends: Python (no Go here), {latency_ms} ms latency")
    return _listening(subprocess.Popen([sys.executable, str(REPO / "bench" / "fake_backends.py"), str(port), str(latency_ms), "20"],
                                       cwd=REPO, env={**os.environ, "BENCH_FAULT_RATE": str(fault_rate)}), port)


def _listening(process: subprocess.Popen[bytes], port: int, seconds: float = 30.0) -> subprocess.Popen[bytes]:
    """`process` once it accepts connections on `port`. The load must not start before: the P3 floor has no
    retries, so a backend still starting (a cold first exec on a fresh machine) became one 500 per client."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the fake backends never listened on {port} (exit status {process.poll()})")


def _load(api: str, clients: int, duration: int) -> subprocess.Popen[str]:
    """wrk (C, one thread) when installed: the load generator then costs almost no CPU; else load.py."""
    if shutil.which("wrk"):
        return subprocess.Popen(["wrk", "-t1", f"-c{clients}", f"-d{duration}s", "--latency", "--timeout", "10s",
                                 "-s", str(REPO / "bench" / "wrk_correlate.lua"), api], stdout=subprocess.PIPE, text=True)
    return subprocess.Popen([sys.executable, str(REPO / "bench" / "load.py"), api, str(clients), str(duration)],
                            stdout=subprocess.PIPE, text=True)


def _summarise_wrk(out: str, clients: int, duration: int) -> str:
    """wrk's report → the same one line load.py prints."""
    if not out.lstrip().startswith("Running"):
        return out.strip()
    def number(pattern: str, default: float = 0.0) -> float:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else default
    def ms(label: str) -> float:
        found = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\b", out, re.M)
        if not found:
            return float("nan")
        return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
    statuses = {int(k): int(v) for k, v in re.findall(r"(\d{3}): (\d+)", out.split("statuses", 1)[-1])}
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(v for k, v in statuses.items() if k >= 500) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    rate = number(r"Requests/sec:\s+([\d.]+)")
    return (f"P3  {clients} clients × {duration}s (wrk): {rate:.0f} correlations/s, p50 {ms('50'):.1f} ms, "
            f"p99 {ms('99'):.1f} ms, errors {errors}, statuses {dict(sorted(statuses.items()))}")


def _listeners(port: int) -> int:
    """Listening sockets on `port` (with SO_REUSEPORT, one per worker)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[1].endswith(f":{port:04X}") and row.split()[3] == "0A")


def p3(quick: bool, fault_rate: float = 0.0, workers: int = 1, floor: str | None = None) -> None:
    import httpx

    duration = 5 if quick else int(os.environ.get("BENCH_DURATION", "60"))
    clients = 20 if quick else 100
    backend_port, api_port = free_port(), free_port()
    backends = _backends(backend_port, 20, fault_rate)
    base = f"http://127.0.0.1:{backend_port}"
    env = {**os.environ, "CORRELATOR_JAEGER_URL": base, "CORRELATOR_LOKI_URL": base, "CORRELATOR_PROMETHEUS_URL": base,
           "CORRELATOR_CACHE_MAX_ENTRIES": "0", "CORRELATOR_SERVER_PORT": str(api_port), "CORRELATOR_DEADLINE_SECONDS": "2"}
    command = [sys.executable, "-m", "correlator", "serve", "--port", str(api_port), "--workers", str(workers)]
    if floor:  # the same load against the four backend calls alone (bench/floor.py), one process
        command, workers = [sys.executable, str(REPO / "bench" / "floor.py"), str(api_port), base, floor], 1
    server = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                # Every worker must be listening before the load connects: wrk's connections are
                # long-lived, and the kernel only spreads them over sockets that exist.
                if httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=1).status_code == 200 and \
                        _listeners(api_port) >= workers:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

        def pids() -> list[int]:
            children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
            return [server.pid, *map(int, children)]

        def sample() -> tuple[float, int]:
            rss, fds = 0.0, 0
            for pid in pids():
                status = Path(f"/proc/{pid}/status").read_text()
                rss += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS")) / 1024
                fds += len(os.listdir(f"/proc/{pid}/fd"))
            return rss, fds

        def cpu_seconds() -> float:  # user + system time of the server's processes (noise-proof, unlike rates)
            ticks = os.sysconf("SC_CLK_TCK")
            return sum(sum(map(int, Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13])) / ticks
                       for pid in pids())

        cpu_before = cpu_seconds()
        load = _load(f"http://127.0.0.1:{api_port}", clients, duration)
        time.sleep(duration * 0.25)
        early = sample()
        out, _ = load.communicate(timeout=duration + 60)
        late = sample()
        cpu_used = cpu_seconds() - cpu_before
        hwm = sum(next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("VmHWM")) for pid in pids()) / 1024
        label = f"SOAK (faults in {fault_rate:.0%} of backend answers)" if fault_rate else f"P3 floor {floor}" if floor else "P3"
        print(_summarise_wrk(out, clients, duration).replace("P3 ", label + " ", 1) + f", {workers} worker(s)")
        served = re.search(r"(\d+) requests in", out)
        if served:
            print(f"    server CPU per request: {cpu_used * 1000 / int(served.group(1)):.3f} ms "
                  f"({cpu_used:.1f} s for {served.group(1)} requests)")
        try:  # the backends count the queries in flight (the bulkhead caps are sized from this)
            peaks = {name: g["peak"] for name, g in httpx.get(f"{base}/stats", timeout=2).json().items()}
            print(f"    backend queries in flight, peak: {peaks}")
        except (httpx.HTTPError, ValueError):
            pass
        print(f"{'SOAK' if fault_rate else 'P5 '} server RSS at 25% {early[0]:.0f} MB → end {late[0]:.0f} MB (peak {hwm:.0f} MB); "
              f"open fds {early[1]} → {late[1]}")
    finally:
        for proc in (server, backends):
            proc.terminate()
            proc.wait(10)


def soak(quick: bool, workers: int = 1) -> None:
    """100 clients for 60 s with faults mixed in: no 5xx, RSS and fd count flat."""
    p3(quick, fault_rate=0.1, workers=workers)


# ------------------------------------------------------------------------------ flood (overload protection)


def _serve(api_port: int, backend: str, extra_env: dict[str, str], launcher: tuple[str, ...] = ("-m", "correlator"),
           ) -> subprocess.Popen[bytes]:
    """`correlator serve`, one worker, against `backend`; returns once /healthz answers. `launcher`: how the
    service is started (p8: bench/loopstall.py, which watches its event loop)."""
    import httpx

    env = {**os.environ, "CORRELATOR_JAEGER_URL": backend, "CORRELATOR_LOKI_URL": backend, "CORRELATOR_PROMETHEUS_URL": backend,
           "CORRELATOR_DEADLINE_SECONDS": "5", **extra_env}
    server = subprocess.Popen([sys.executable, *launcher, "serve", "--port", str(api_port)], cwd=REPO, env=env,
                              stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            if httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError("the correlator did not start")


def _helper(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(REPO / "bench" / "flood.py"), *map(str, args)], stdout=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen[str]) -> dict:  # type: ignore[type-arg]
    out, _ = proc.communicate(timeout=300)
    return orjson.loads(out)  # type: ignore[no-any-return]


def flood(quick: bool) -> None:
    """Unique IDs at 5× the sustainable rate against small backend caps (the backends are the limit):
    backend queries in flight vs the caps, how fast the excess is refused, cache hits and /healthz
    during the flood vs before, and how soon a correlation succeeds once it stops."""
    import httpx

    latency_ms, caps = 50, {"jaeger": 8, "loki": 16, "prometheus": 8}
    seconds = 3 if quick else 15
    backend_port, api_port = free_port(), free_port()
    backends = _backends(backend_port, latency_ms, 0.0)
    backend, api = f"http://127.0.0.1:{backend_port}", f"http://127.0.0.1:{api_port}"
    env = {f"CORRELATOR_{name.upper()}_MAX_IN_FLIGHT": str(cap) for name, cap in caps.items()}
    server = _serve(api_port, backend, env)
    try:
        cached = "/correlate/4bf92f3577b34da6a3ce929d0e0e4736"
        for _ in range(2):
            warm = httpx.get(api + cached, timeout=10).json()
        assert warm["cached"], "the cache-hit probe's trace must be cached"
        # What the caps let through: each correlation holds a Jaeger slot for one backend latency, then
        # two Loki and one Prometheus slot for another (no hint) → min(cap ÷ (weight × latency)).
        rate = min(caps["jaeger"], caps["loki"] / 2, caps["prometheus"]) / (latency_ms / 1000)
        sustainable = _result(_helper("closed", api, 2 * caps["jaeger"], 2 if quick else 5))
        measured = sustainable["200"]["n"] / sustainable["seconds"]  # type: ignore[index]
        before = _result(_helper("probe", api, f"{cached},/healthz", 2 if quick else 5))
        httpx.get(f"{backend}/stats?reset=1")
        generator = _go_build("flood")  # Go: a Python generator at this rate costs more CPU than the server
        load = (subprocess.Popen([str(generator), api, str(5 * rate), str(seconds)], stdout=subprocess.PIPE, text=True)
                if generator else _helper("open", api, 5 * rate, seconds))
        during = _result(_helper("probe", api, f"{cached},/healthz", seconds - 0.5))
        flood_result = _result(load)
        peaks = httpx.get(f"{backend}/stats").json()
        t = time.perf_counter()
        statuses = []
        while len(statuses) < 20:
            statuses.append(httpx.get(f"{api}/correlate/{random.getrandbits(128):032x}", timeout=10).status_code)
        recovery_ms = (time.perf_counter() - t) * 1000
    finally:
        for proc in (server, backends):
            proc.terminate()
            proc.wait(10)

    def p99(result: dict, key: str) -> str:  # type: ignore[type-arg]
        return f"{result[key]['p99']:.1f}" if key in result else "n/a"

    counts = {k: v["n"] for k, v in flood_result.items() if isinstance(v, dict)}
    print(f"FLOOD caps {caps} (per worker), backends {latency_ms} ms: sustainable {rate:.0f}/s "
          f"(closed loop of {2 * caps['jaeger']} callers here: {measured:.0f}/s); "
          f"flood at {5 * rate:.0f}/s for {seconds}s: statuses {counts}")
    print("FLOOD backend queries in flight, peak: " + ", ".join(f"{n} {peaks[n]['peak']} (cap {caps[n]})" for n in caps)
          + ("  ✓" if all(peaks[n]["peak"] <= caps[n] for n in caps) else "  ✗ OVER THE CAP"))
    print(f"FLOOD 503 latency p50 {flood_result.get('503', {}).get('p50', float('nan')):.1f} ms, p99 {p99(flood_result, '503')} ms; "
          f"200 p99 {p99(flood_result, '200')} ms")
    print(f"FLOOD cache hit p99 {p99(before, cached)} ms before → {p99(during, cached)} ms during; "
          f"/healthz p99 {p99(before, '/healthz')} → {p99(during, '/healthz')} ms; probe statuses during {during['statuses']}")
    print(f"FLOOD after the flood: 20 sequential new correlations {sorted(set(statuses))} in {recovery_ms:.0f} ms")


# ------------------------------------------------------------------------------ P8 (a big trace does not stall the worker)


def _tree_hwm_mb(pid: int) -> tuple[float, float]:
    """(peak RSS of the process itself, summed peak RSS of it and every descendant) in MB."""
    def hwm(p: int) -> float:
        status = Path(f"/proc/{p}/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")) / 1024

    def descendants(p: int) -> list[int]:
        kids: list[int] = []
        for task in Path(f"/proc/{p}/task").iterdir():
            kids += map(int, (task / "children").read_text().split())
        return kids + [d for k in kids for d in descendants(k)]

    own = hwm(pid)
    return own, own + sum(hwm(k) for k in descendants(pid))


def _loop_stats(path: Path) -> dict[str, Any]:
    """bench/loopstall.py's latest figures of the service's event loop (it writes them every second)."""
    time.sleep(1.1)
    return orjson.loads(path.read_bytes())  # type: ignore[no-any-return]


def _stalls(before: dict[str, Any], after: dict[str, Any]) -> dict[int, int]:
    return {int(k): v - before["gaps_at_least_ms"][k] for k, v in after["gaps_at_least_ms"].items()}


def p8(quick: bool) -> None:
    """p99 of small correlations, /healthz and cache hits alone, then beside one 100k-span correlation
    in flight all the time (one caller asking for big traces back to back); with the worker process
    (the default) and without it (server.offload_bytes=0: everything on the event loop). Also P5: the
    service's peak RSS (its own, and with the worker process) under that load.

    On a shared machine those p99s are noisy; the noise-proof figures beside them come from
    bench/loopstall.py: the event loop's CPU per big correlation (big ones alone), and how often the
    loop was busy ≥ 5 / 10 / 20 ms of CPU at a stretch (what a probe waits behind) while probed."""
    import httpx

    spans = 5000 if quick else 100_000
    seconds = 4 if quick else 20
    backend_port = free_port()
    backends = _backends(backend_port, 20, 0.0, big_spans=spans)
    backend = f"http://127.0.0.1:{backend_port}"
    probes = "unique,/healthz,/correlate/4bf92f3577b34da6a3ce929d0e0e4736"
    rows = []
    stats = Path(tempfile.mkdtemp(prefix="bench-p8-")) / "loop.json"
    atexit.register(shutil.rmtree, stats.parent, True)
    try:
        modes = (("worker process (default)", None), ("all on the event loop", "0"))
        for label, offload in modes[:1] if os.environ.get("BENCH_P8_WORKER_ONLY") else modes:  # A/B runs: the default only
            api_port = free_port()
            env = {"CORRELATOR_DEADLINE_SECONDS": "60"} | ({"CORRELATOR_SERVER_OFFLOAD_BYTES": offload} if offload else {})
            server = _serve(api_port, backend, env, (str(REPO / "bench" / "loopstall.py"), str(stats)))
            api = f"http://127.0.0.1:{api_port}"
            try:
                for _ in range(2):
                    httpx.get(api + "/correlate/4bf92f3577b34da6a3ce929d0e0e4736", timeout=10)
                httpx.get(api + f"/correlate/b16b16{0:026x}", timeout=120)  # the worker started, its imports paid
                first = _loop_stats(stats)
                alone = _result(_helper("probe", api, probes, seconds))
                probed_alone = _loop_stats(stats)
                server.send_signal(signal.SIGUSR1)  # the watcher slowed down: its own CPU out of the loop's
                idle = _loop_stats(stats)
                for n in range(bigs := 10 if quick else 4):  # one after another, nothing else running
                    httpx.get(api + f"/correlate/b16b16{n + 1:026x}", timeout=120).raise_for_status()
                after_big = _loop_stats(stats)
                server.send_signal(signal.SIGUSR1)
                big = _helper("probe", api, "big", seconds + 5)
                time.sleep(2)  # the first big answer is on its way
                before_beside = _loop_stats(stats)
                beside = _result(_helper("probe", api, probes, seconds))
                after_beside = _loop_stats(stats)
                big_result = _result(big)
                own, total = _tree_hwm_mb(server.pid)
            finally:
                server.terminate()
                server.wait(10)
            loop_ms_per_big = (after_big["loop_cpu_s"] - idle["loop_cpu_s"]) * 1000 / bigs
            rows.append((label, alone, beside, big_result, own, total, loop_ms_per_big,
                         _stalls(first, probed_alone), _stalls(before_beside, after_beside)))
    finally:
        backends.terminate()
        backends.wait(10)
    names = {"unique": "small correlation", "/healthz": "/healthz", "/correlate/4bf92f3577b34da6a3ce929d0e0e4736": "cache hit"}
    print(f"P8  p99 ms alone → beside one {spans}-span correlation in flight (ratio; goal ≤ 2)")
    for label, alone, beside, big_result, own, total, loop_ms_per_big, stalls_alone, stalls_beside in rows:
        cells = []
        for key, name in names.items():
            a, b = alone[key]["p99"], beside[key]["p99"]
            cells.append(f"{name} {a:.1f} → {b:.1f} (×{b / a:.1f})")
        big_stats = big_result["big"]
        print(f"P8  [{label}] " + "; ".join(cells) + f"; big correlations {big_stats['n']} × p50 {big_stats['p50']:.0f} ms "
              f"{big_result['statuses']}; probe statuses {beside['statuses']}")
        print(f"P8  [{label}] event loop CPU per big correlation {loop_ms_per_big:.0f} ms; loop busy ≥ 5/10/20 ms at a stretch "
              f"while probed: alone {stalls_alone[5]}/{stalls_alone[10]}/{stalls_alone[20]}, "
              f"beside the big ones {stalls_beside[5]}/{stalls_beside[10]}/{stalls_beside[20]} times in {seconds} s")
        print(f"P5  [{label}] peak RSS under P8's load: service process {own:.0f} MB, with its worker {total:.0f} MB")


# ------------------------------------------------------------------------------ P1 / P1b


def p1(quick: bool) -> None:
    from collections import Counter

    import aiohttp
    import httpx
    import requests
    from aiohttp import web

    from correlator.sources._http import make_client
    from correlator.sources.jaeger import JaegerSource
    from correlator.sources.loki import LokiSource
    from correlator.sources.prometheus import PrometheusSource
    from correlator.untraced_share import SharedLookups
    from tests.fakes.loki import make_fake_loki_app, scenario
    from tests.integration.otlp import send_seed_trace
    from tests.integration.servers import jaeger_server, prometheus_server

    sc = scenario()
    runs = 10 if quick else 60
    loki_latency = 0.05
    with jaeger_server() as jaeger, prometheus_server() as prom:
        exemplar = httpx.get(f"{prom.url}/api/v1/query_exemplars", params={"query": "http_server_duration_seconds_bucket"}).json()
        stamp = next(ex["timestamp"] for s in exemplar["data"] for ex in s["exemplars"] if ex["labels"]["trace_id"] == sc["trace_id"])
        t0 = round(stamp * 1000) * 1_000_000 - 145_000_000
        send_seed_trace(jaeger.otlp_url, sc["trace_id"], sc["span_ids"], t0)
        time.sleep(1)

        async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
            runner = web.AppRunner(app)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            return runner, f"http://127.0.0.1:{port}"

        def delayed(upstream: str, latency_s: float) -> web.Application:
            """A real backend, answering `latency_s` later (a remote or loaded Jaeger/Prometheus)."""
            app = web.Application()

            async def forward(request: web.Request) -> web.Response:
                await asyncio.sleep(latency_s)
                async with aiohttp.ClientSession() as session, session.get(upstream + request.path_qs) as response:
                    return web.Response(status=response.status, body=await response.read(),
                                        content_type=response.content_type)

            app.router.add_get("/{tail:.*}", forward)
            return app

        async def measure(label: str, jaeger_url: str, loki_url: str, prom_url: str) -> None:
            s = load_settings(environ={"CORRELATOR_JAEGER_URL": jaeger_url, "CORRELATOR_LOKI_URL": loki_url,
                                       "CORRELATOR_PROMETHEUS_URL": prom_url, "CORRELATOR_CACHE_MAX_ENTRIES": "0"})
            tid = parse_trace_id(sc["trace_id"])
            window = Window(t0, t0 + 145_000_000)
            services = ["api-gateway", "auth-service", "course-service"]
            async with make_client(s.jaeger) as jc, make_client(s.loki) as lc, make_client(s.prometheus) as pc:
                jaeger_src, loki_src, prom_src = JaegerSource(s.jaeger, jc), LokiSource(s.loki, lc), PrometheusSource(s.prometheus, pc)
                singles: dict[str, list[float]] = {"jaeger": [], "loki": [], "prometheus": []}
                calls = {"jaeger": lambda: jaeger_src.fetch(tid, window), "loki": lambda: loki_src.fetch(tid, window, services),
                         "prometheus": lambda: prom_src.fetch(tid, window)}
                for _ in range(runs):
                    for name, call in calls.items():
                        t = time.perf_counter()
                        await call()
                        singles[name].append((time.perf_counter() - t) * 1000)
                correlator = Correlator(s, jaeger_src, loki_src, prom_src)
                hinted, unhinted = [], []
                untraced_seen: Counter[str] = Counter()  # with a hint: summary.untraced status/overlap_check
                for _ in range(runs):
                    t = time.perf_counter()
                    out = await correlator.correlate(tid, window)
                    hinted.append((time.perf_counter() - t) * 1000)
                    assert len(out.correlation.logs) == 8 and out.correlation.trace is not None
                    u = out.correlation.untraced
                    untraced_seen[f"{u.status}/{u.overlap_check}" if u else "none"] += 1
                    correlator.shared = SharedLookups(s.join.untraced_share_seconds)  # cold, as the cache is off
                    t = time.perf_counter()
                    await correlator.correlate(tid)
                    unhinted.append((time.perf_counter() - t) * 1000)
                    correlator.shared = SharedLookups(s.join.untraced_share_seconds)
            medians = {k: statistics.median(v) for k, v in singles.items()}
            slowest = max(medians.values())
            print(f"P1  [{label}] single calls alone (p50 ms): " + ", ".join(f"{k} {v:.2f}" for k, v in medians.items()))
            print(f"P1  [{label}] correlate with hint p50 {statistics.median(hinted):.2f} ms → ÷ slowest single = "
                  f"{statistics.median(hinted) / slowest:.3f}; untraced (status/overlap_check): "
                  + ", ".join(f"{k} ×{n}" for k, n in sorted(untraced_seen.items())))
            print(f"P1  [{label}] correlate without hint p50 {statistics.median(unhinted):.2f} ms → ÷ slowest single = "
                  f"{statistics.median(unhinted) / slowest:.3f} (floor: jaeger + max(loki, prometheus) = "
                  f"{medians['jaeger'] + max(medians['loki'], medians['prometheus']):.2f} ms)")

            def naive() -> None:  # what a user's script does: the same calls, one after another, blocking
                requests.get(f"{jaeger_url}/api/v3/traces/{tid.hex}", timeout=10).json()
                for query in loki_src.queries(tid, services):
                    requests.get(f"{loki_url}/loki/api/v1/query_range", params={
                        "query": query, "start": str(t0 - 60 * 10**9), "end": str(t0 + 61 * 10**9), "limit": "1000"}, timeout=10).json()
                requests.get(f"{prom_url}/api/v1/query_exemplars", params={
                    "query": '{__name__=~".+"}', "start": f"{t0 / 1e9 - 60:.3f}", "end": f"{t0 / 1e9 + 60:.3f}"}, timeout=10).json()

            naive_ms = []
            for _ in range(runs):
                t = time.perf_counter()
                await asyncio.to_thread(naive)
                naive_ms.append((time.perf_counter() - t) * 1000)
            print(f"P1b [{label}] naive sequential (requests) p50 {statistics.median(naive_ms):.2f} ms → naive ÷ ours(hint) = "
                  f"{statistics.median(naive_ms) / statistics.median(hinted):.2f}, naive ÷ ours(no hint) = "
                  f"{statistics.median(naive_ms) / statistics.median(unhinted):.2f}")

        async def main() -> None:
            loki, loki_url = await serve(make_fake_loki_app(latency_s=loki_latency, shift_ns=t0 - sc["t0_unix_nano"]))
            await measure(f"Loki {loki_latency * 1000:.0f} ms, Jaeger and Prometheus as they are", jaeger.query_url, loki_url, prom.url)
            # Parallelism buys sum ÷ max: with one slow backend that is ~1, so also measure the case
            # where every backend is as slow as Loki (remote, loaded, or behind a gateway).
            slow_jaeger, slow_jaeger_url = await serve(delayed(jaeger.query_url, loki_latency))
            slow_prom, slow_prom_url = await serve(delayed(prom.url, loki_latency))
            await measure(f"all three {loki_latency * 1000:.0f} ms", slow_jaeger_url, loki_url, slow_prom_url)
            for runner in (loki, slow_jaeger, slow_prom):
                await runner.cleanup()

        asyncio.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    if sys.argv[1:2] == ["p2-size"]:  # internal: one P2 size's timings in a fresh process
        p2_size(*map(int, sys.argv[2:6]))
        return 0
    if sys.argv[1:2] == ["p2-peak"]:  # internal: one P2 size's peak RSS in a fresh process
        p2_peak(*map(int, sys.argv[2:5]))
        return 0
    parser.add_argument("figure", choices=["p1", "p2", "p3", "p4", "soak", "flood", "p8", "page", "all"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds: the CI smoke")
    parser.add_argument("--workers", type=int, default=1, help="p3/soak: correlator processes (`serve --workers`)")
    parser.add_argument("--floor", choices=["httpx-aiohttp", "httpx-httpcore", "aiohttp", "correlator-client"],
                        help="p3: load bench/floor.py (the four backend calls alone, with this client) instead")
    args = parser.parse_args()
    random.seed(1)
    for name in (["p2", "p4", "p3", "soak", "flood", "p8", "p1"] if args.figure == "all" else [args.figure]):
        if name == "p3":
            p3(args.quick, workers=args.workers, floor=args.floor)
        elif name == "soak":
            soak(args.quick, workers=args.workers)
        elif name == "page":  # the HTML page's figures (issue 13); needs Debian's chromium for the browser column
            from bench.page import main as page_main

            page_main(args.quick)
        else:
            globals()[name](args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

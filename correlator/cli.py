"""The `correlator` command: serve the API, correlate one trace, provision Grafana, check backends, MCP.

asyncio.run only at this edge; everything below it is the same code the service runs.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

from correlator import __version__
from correlator.config import Settings, load_settings
from correlator.errors import ConfigError, InvalidInput
from correlator.model import Exemplar

__all__ = ["EXIT_BAD_INPUT", "EXIT_CANNOT_SERVE", "EXIT_NOT_FOUND", "EXIT_OK", "EXIT_PARTIAL", "main"]

EXIT_OK = 0
EXIT_NOT_FOUND = 1  # correlate: no source knows the trace; check: a backend is not ready; provision --check: out of sync
EXIT_BAD_INPUT = 2  # bad arguments, bad trace ID or time, bad config
EXIT_PARTIAL = 3  # correlate: an answer, but some source failed (the report names it)
EXIT_CANNOT_SERVE = 4  # serve: the address cannot be listened on (port in use, no permission)

_DESCRIPTION = """Give it a trace ID; get back everything Jaeger, Loki and Prometheus know about that request:
the trace, every log line and exemplar that carries the ID (each attached to the span that
wrote it), and the trace read for you (bottleneck, critical path, N+1, errors, gaps, fan-out).

Backends come from a YAML file (--config or $CORRELATOR_CONFIG) and CORRELATOR_* variables,
e.g. CORRELATOR_JAEGER_URL=http://localhost:16686 CORRELATOR_LOKI_URL=http://localhost:3100
CORRELATOR_PROMETHEUS_URL=http://localhost:9090."""

_EXIT_CODES = """exit codes:
  0  ok
  1  correlate: no source knows the trace · check: a backend is not ready ·
     provision --check: the files are out of sync
  2  bad input: arguments, trace ID, time or configuration
  3  correlate: a partial answer (some backend failed; the report says which)
  4  serve: cannot listen on the address (port in use or not permitted)"""

_EPILOG = """examples:
  correlator check                                  are the three backends reachable?
  correlator slow                                   recent slow requests and their trace IDs
  correlator correlate 4bf92f3577b34da6a3ce929d0e0e4736
  correlator serve --port 8080                      the HTTP API (GET /correlate/{trace_id})

""" + _EXIT_CODES


def _parser() -> argparse.ArgumentParser:
    # --config is accepted before or after the subcommand: both parsers know it, and the
    # subcommand's copy only overrides when given (SUPPRESS leaves the first one alone).
    config_first = argparse.ArgumentParser(add_help=False)
    config_first.add_argument("--config", metavar="FILE",
                              help="YAML config file (default: $CORRELATOR_CONFIG; CORRELATOR_* variables override it)")
    config_after = argparse.ArgumentParser(add_help=False)
    config_after.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                              help="YAML config file (also accepted before the command)")

    parser = argparse.ArgumentParser(prog="correlator", description=_DESCRIPTION, epilog=_EPILOG,
                                     parents=[config_first], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"correlator {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary, epilog=_EXIT_CODES, parents=[config_after],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    serve = command("serve", "serve the HTTP API (and the page for browsers) until Ctrl-C or SIGTERM")
    serve.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1; "
                                      "0.0.0.0 only behind auth: set server.auth_token first)")
    serve.add_argument("--port", type=int, help="TCP port to listen on (default: server.port, 8080)")
    serve.add_argument("--workers", type=int, help="processes sharing the port, one per core (default: server.workers, 1)")

    corr = command("correlate", "correlate one trace ID (or exported files: --trace) and print the report "
                                "(findings first, then the span tree)")
    corr.add_argument("trace_id", nargs="?", help="the trace ID: 32 or 16 hex digits, any case, leading zeros optional "
                                                  "(with --trace: optional, picks one of several traces)")
    corr.add_argument("--json", action="store_true", help="print the API's JSON body instead of the report (= --format json)")
    corr.add_argument("--format", choices=("text", "json"), help="text (default) or json")
    offline = corr.add_argument_group("offline: exported files, no server (formats detected from content; - is stdin)")
    offline.add_argument("--trace", metavar="FILE", help="Jaeger UI JSON, Jaeger /api/v3 answer or OTLP JSON TracesData")
    offline.add_argument("--logs", metavar="FILE", nargs="+", action="extend", default=[],
                         help="Loki query_range answers, logcli --output=jsonl, plain log files (text/logfmt/JSON)")
    offline.add_argument("--exemplars", metavar="FILE", nargs="+", action="extend", default=[],
                         help="Prometheus query_exemplars answers")
    offline.add_argument("--trace-id", dest="file_trace_id", metavar="ID", help="the trace to pick when --trace holds several")
    offline.add_argument("--service", help="the service of plain log files whose lines do not name one")
    corr.add_argument("--start", help="when the request happened, from: RFC 3339 or Unix s/ms/µs/ns "
                                      "(lets all three backends be asked at once)")
    corr.add_argument("--end", help="when the request happened, until: RFC 3339 or Unix s/ms/µs/ns")

    prov = command("provision", "write Grafana's datasource provisioning, generated from this config")
    prov.add_argument("--out", default=None, metavar="DIR",
                      help="the repository root to write provisioning/ under (default: the correlator checkout "
                           "this command runs from, else the current directory)")
    prov.add_argument("--check", action="store_true", help="only report whether the files are in sync (exit 1 if not)")

    slow = command("slow", "list recent slow requests (Prometheus exemplars, slowest first) with their trace IDs")
    slow.add_argument("query", nargs="?", help="PromQL selector of latency histogram series "
                                               "(default: prometheus.slow_requests_selector, every *_bucket series)")
    slow.add_argument("--since", default="15m", help="how far back to look: 90s, 15m, 2h (default: 15m)")
    slow.add_argument("--limit", type=int, default=10, help="how many requests to list (default: 10)")

    command("check", "validate the config and probe the three backends at once")
    from correlator.investigate_cli import add_parser as add_investigate

    add_investigate(command)
    command("mcp", "serve the MCP tools over stdio for an agent (HTTP: `serve` answers at /mcp); see docs/mcp.md")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"correlator: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        if args.command == "serve":
            return _serve(settings, args.host, args.port, args.workers)
        if args.command == "correlate":
            as_json = args.json or args.format == "json"
            if args.trace is not None:
                return asyncio.run(_correlate_files(settings, args, as_json))
            if args.trace_id is None or args.logs or args.exemplars:
                raise InvalidInput("correlate", "give a trace ID, or --trace FILE (with --logs/--exemplars) for exported files")
            return asyncio.run(_correlate(settings, args.trace_id, args.start, args.end, as_json))
        if args.command == "provision":
            return _provision(settings, Path(args.out) if args.out else _repository_root(), args.check)
        if args.command == "check":
            return asyncio.run(_check(settings))
        if args.command == "slow":
            return asyncio.run(_slow(settings, args.query, args.since, args.limit))
        if args.command == "investigate":
            from correlator.investigate_cli import run as run_investigate

            return asyncio.run(run_investigate(settings, args))
        if args.command == "mcp":
            from correlator.mcp import run_stdio

            asyncio.run(run_stdio(settings))
            return 0
    except InvalidInput as exc:
        print(f"correlator: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_BAD_INPUT  # pragma: no cover - argparse enforces the choices


def _serve(settings: Settings, host: str | None, port: int | None, workers: int | None = None) -> int:
    host, port = host or settings.server.host, port or settings.server.port
    workers = workers or settings.server.workers
    refusal = _cannot_listen(host, port)
    if refusal:
        print(f"correlator: {refusal}", file=sys.stderr)
        return EXIT_CANNOT_SERVE
    where = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    announce = (f"correlator {__version__} listening on {where} ({workers} worker{'s' if workers > 1 else ''}); "
                f"Ctrl-C to stop")
    if workers <= 1:
        return _serve_one(settings, host, port, reuse_port=False, announce=announce)
    print(announce, file=sys.stderr, flush=True)
    # Each worker is a whole correlator (own clients, own cache) on the same port; the kernel
    # spreads connections. The parent only forwards SIGTERM and waits.
    import multiprocessing
    import signal

    children = [multiprocessing.Process(target=_serve_worker, args=(settings, host, port), daemon=False)
                for _ in range(workers)]
    for child in children:
        child.start()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.pid:
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    return max((child.exitcode or 0) for child in children)


def _cannot_listen(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on, in one line, or None. Checked once before the
    workers start, so a busy port is one clear line and not a traceback per worker."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot listen on {host}: {exc.strerror}; pick another with --host"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} is in use on {host}; pick another with --port"
            if exc.errno == errno.EACCES:
                return f"not permitted to listen on port {port}; pick one above 1023 with --port"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{host} is not an address of this machine; pick another with --host"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def _repository_root() -> Path:
    """Where `provision` writes by default: the checkout this correlator runs from (so the shipped
    provisioning/ is the one updated, wherever the command is started), else the current directory."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "provisioning").is_dir() and (checkout / "pyproject.toml").is_file():
        return checkout
    return Path.cwd()


def _serve_one(settings: Settings, host: str, port: int, reuse_port: bool, announce: str | None = None) -> int:
    from aiohttp import web

    from correlator.api import create_app
    from correlator.telemetry import configure_logging, configure_tracing

    configure_logging()
    configure_tracing()
    _tune_gc()
    def started(_aiohttp_banner: str) -> None:  # called once the socket is bound
        if announce:
            print(announce, file=sys.stderr, flush=True)

    try:
        web.run_app(create_app(settings), host=host, port=port, handler_cancellation=True, shutdown_timeout=10.0,
                    access_log=None, reuse_port=reuse_port or None, print=started, loop=_event_loop())
    except OSError as exc:  # lost the race with another process after _cannot_listen said yes
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"correlator: port {port} is in use on {host}; pick another with --port", file=sys.stderr)
        return EXIT_CANNOT_SERVE
    return EXIT_OK


def _serve_worker(settings: Settings, host: str, port: int) -> None:
    sys.exit(_serve_one(settings, host, port, reuse_port=True))


def _tune_gc() -> None:
    """A server allocates in short bursts and keeps little: collect young objects less often,
    and move what start-up built (modules, settings, clients) out of the collector's sight."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 20, 20)


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed: the event loop is a fixed share of every request's CPU (bench P3)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _correlate(settings: Settings, raw_id: str, start: str | None, end: str | None, as_json: bool) -> int:
    from correlator.correlate import Correlator
    from correlator.ids import parse_trace_id
    from correlator.render import correlation_body
    from correlator.report import render_text
    from correlator.sources._http import make_client
    from correlator.sources.jaeger import JaegerSource
    from correlator.sources.loki import LokiSource
    from correlator.sources.prometheus import PrometheusSource
    from correlator.timeparams import parse_window

    trace_id = parse_trace_id(raw_id)
    hint = parse_window(start, end)
    async with make_client(settings.jaeger) as jc, make_client(settings.loki) as lc, make_client(settings.prometheus) as pc:
        prometheus = PrometheusSource(settings.prometheus, pc)
        correlator = Correlator(settings, JaegerSource(settings.jaeger, jc), LokiSource(settings.loki, lc), prometheus)
        outcome = await correlator.correlate(trace_id, hint)
        body = correlation_body(outcome, settings)
        from correlator.standing_run import StandingLookup, add_standings

        add_standings(body, outcome.correlation, await StandingLookup(settings).lookup(prometheus, outcome.correlation, None))
    if as_json:
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render_text(outcome, body))
    if outcome.http_status == 404:
        return EXIT_NOT_FOUND
    return EXIT_OK if outcome.all_answered else EXIT_PARTIAL


async def _correlate_files(settings: Settings, args: argparse.Namespace, as_json: bool) -> int:
    from correlator.ids import parse_trace_id
    from correlator.offline import correlate_files, exit_code, read_inputs
    from correlator.render import correlation_body
    from correlator.report import render_text

    raw_id = args.file_trace_id or args.trace_id
    trace_id = parse_trace_id(raw_id) if raw_id else None
    trace_file, *files = read_inputs([args.trace, *args.logs, *args.exemplars])  # one read each; stdin at most once
    log_files, exemplar_files = files[: len(args.logs)], files[len(args.logs):]
    outcome = await correlate_files(settings, trace_file, log_files, exemplar_files, trace_id, args.service)
    body = correlation_body(outcome, settings)
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n" if as_json else render_text(outcome, body))
    return exit_code(outcome)


def _provision(settings: Settings, out: Path, check: bool) -> int:
    from correlator.provisioning import check_provisioning, write_provisioning

    if check:
        differences = check_provisioning(settings, out)
        for line in differences:
            print(line)
        if not differences:
            print(f"in sync: {out / 'provisioning'}")
        return EXIT_NOT_FOUND if differences else EXIT_OK
    for path in write_provisioning(settings, out):
        print(f"wrote {path}")
    return EXIT_OK


async def _check(settings: Settings) -> int:
    """Probe the three backends at once: the slowest (or a hanging one) bounds the wait, not the sum."""
    from correlator.errors import SourceError
    from correlator.sources._http import make_client
    from correlator.sources.jaeger import JaegerSource
    from correlator.sources.loki import LokiSource
    from correlator.sources.prometheus import PrometheusSource

    budget = min(settings.deadline_seconds, 5.0)

    async def probe(name: str, ready: Callable[[], Awaitable[None]]) -> tuple[str, str | None]:
        try:
            async with asyncio.timeout(budget):
                await ready()
        except TimeoutError:
            return name, f"no answer within {budget:g}s"
        except SourceError as exc:
            return name, exc.message
        return name, None

    async with make_client(settings.jaeger) as jc, make_client(settings.loki) as lc, make_client(settings.prometheus) as pc:
        results = await asyncio.gather(
            probe("jaeger", JaegerSource(settings.jaeger, jc).ready), probe("loki", LokiSource(settings.loki, lc).ready),
            probe("prometheus", PrometheusSource(settings.prometheus, pc).ready))
    for name, problem in results:
        url = getattr(settings, name).url
        print(f"{name}: ready ({url})" if problem is None else f"{name}: NOT ready ({url}): {problem}")
    return EXIT_OK if all(problem is None for _, problem in results) else EXIT_NOT_FOUND


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(text: str) -> float:
    number, unit = text[:-1], text[-1:]
    try:
        value = float(number) * _UNITS[unit]
    except (KeyError, ValueError):
        raise InvalidInput("--since", f"{text!r} is not a duration like 90s, 15m, 2h or 1d") from None
    if not 0 < value <= 31 * 86400:
        raise InvalidInput("--since", "must be between 1s and 31d")
    return value


async def _slow(settings: Settings, query: str | None, since: str, limit: int) -> int:
    """Metric → traces from the shell: where to find a trace ID worth correlating."""
    import time

    from correlator.errors import SourceError
    from correlator.sources._http import make_client
    from correlator.sources.prometheus import PrometheusSource
    from correlator.timeparams import rfc3339_ns

    if not 1 <= limit <= 1000:
        raise InvalidInput("--limit", "must be between 1 and 1000")
    query = query or settings.prometheus.slow_requests_selector
    end_ns = time.time_ns()
    start_ns = end_ns - int(_seconds(since) * 1e9)
    async with make_client(settings.prometheus) as client:
        try:
            async with asyncio.timeout(settings.deadline_seconds):
                found = await PrometheusSource(settings.prometheus, client).search(query, start_ns, end_ns)
        except TimeoutError:
            print(f"correlator: Prometheus ({settings.prometheus.url}) did not answer within {settings.deadline_seconds:g}s",
                  file=sys.stderr)
            return EXIT_NOT_FOUND
        except SourceError as exc:
            print(f"correlator: Prometheus ({settings.prometheus.url}): {exc.message}", file=sys.stderr)
            return EXIT_BAD_INPUT if getattr(exc, "status_code", None) == 400 else EXIT_NOT_FOUND
    slowest: dict[str, Exemplar] = {}
    for ex in found:  # one row per trace: its slowest exemplar
        if ex.trace_id not in slowest or ex.value > slowest[ex.trace_id].value:
            slowest[ex.trace_id] = ex
    rows = sorted(slowest.values(), key=lambda ex: -ex.value if ex.value == ex.value else 0.0)[:limit]
    if not rows:
        print(f"no exemplars for {query} in the last {since}: is exemplar storage on "
              "(--enable-feature=exemplar-storage), and does the app attach trace IDs to its histograms?")
        return EXIT_NOT_FOUND
    for ex in rows:
        labels = ",".join(f"{k}={v}" for k, v in sorted(ex.series.items()) if k not in ("__name__", "le"))
        print(f"{ex.trace_id}  {ex.value:>9.3f}  {rfc3339_ns(ex.timestamp_ns)[:23]}Z  {ex.metric}{{{labels}}}")
    print(f"\ncorrelate one: correlator correlate {rows[0].trace_id}")
    return EXIT_OK

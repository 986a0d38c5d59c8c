"""`correlator serve | correlate | investigate | provision | check`; asyncio.run only at this edge.

Exit codes: 0 ok; 1 the trace is unknown to every source; 2 bad input or config;
3 a partial answer (some source failed) for `correlate`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

import orjson

from correlator.config import Settings, load_settings
from correlator.errors import ConfigError, InvalidInput

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="correlator", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML config file (default: $CORRELATOR_CONFIG; env CORRELATOR_* overrides)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", help="listen address (default: server.host)")
    serve.add_argument("--port", type=int, help="listen port (default: server.port)")
    serve.add_argument("--workers", type=int, help="processes sharing the port (default: server.workers)")

    corr = sub.add_parser("correlate", help="correlate one trace ID and print the report")
    corr.add_argument("trace_id")
    corr.add_argument("--json", action="store_true", help="print the API's JSON body")
    corr.add_argument("--start", help="time hint: RFC 3339 or Unix s/ms/µs/ns")
    corr.add_argument("--end", help="time hint: RFC 3339 or Unix s/ms/µs/ns")

    from correlator.investigate_cli import add_parser as add_investigate

    add_investigate(sub)

    prov = sub.add_parser("provision", help="write Grafana provisioning generated from the config")
    prov.add_argument("--out", default=".", help="repository root to write provisioning/ under (default: .)")
    prov.add_argument("--check", action="store_true", help="only report whether the files are in sync (exit 1 if not)")

    sub.add_parser("check", help="validate the config and probe each backend")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"correlator: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            return _serve(settings, args.host, args.port, args.workers)
        if args.command == "correlate":
            return asyncio.run(_correlate(settings, args.trace_id, args.start, args.end, args.json))
        if args.command == "investigate":
            from correlator.investigate_cli import run as run_investigate

            return asyncio.run(run_investigate(settings, args))
        if args.command == "provision":
            return _provision(settings, Path(args.out), args.check)
        if args.command == "check":
            return asyncio.run(_check(settings))
    except InvalidInput as exc:
        print(f"correlator: {exc}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse enforces the choices


def _serve(settings: Settings, host: str | None, port: int | None, workers: int | None = None) -> int:
    host, port = host or settings.server.host, port or settings.server.port
    workers = workers or settings.server.workers
    if workers <= 1:
        _serve_one(settings, host, port, reuse_port=False)
        return 0
    # Each worker is a whole correlator (own clients, own cache) on the same port; the kernel
    # spreads connections. The parent only forwards SIGTERM and waits.
    import multiprocessing
    import signal

    children = [multiprocessing.Process(target=_serve_one, args=(settings, host, port, True), daemon=False)
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


def _serve_one(settings: Settings, host: str, port: int, reuse_port: bool) -> None:
    from aiohttp import web

    from correlator.api import create_app
    from correlator.telemetry import configure_logging, configure_tracing

    configure_logging()
    configure_tracing()
    _tune_gc()
    web.run_app(create_app(settings), host=host, port=port, handler_cancellation=True, shutdown_timeout=10.0,
                access_log=None, reuse_port=reuse_port or None, print=None, loop=_event_loop())


def _tune_gc() -> None:
    """A server allocates in short bursts and keeps little: collect young objects less often,
    and move what start-up built (modules, settings, clients) out of the collector's sight."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


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
        return 1
    return 0 if outcome.all_answered else 3


def _provision(settings: Settings, out: Path, check: bool) -> int:
    from correlator.provisioning import check_provisioning, write_provisioning

    if check:
        differences = check_provisioning(settings, out)
        for line in differences:
            print(line)
        return 1 if differences else 0
    for path in write_provisioning(settings, out):
        print(f"wrote {path}")
    return 0


async def _check(settings: Settings) -> int:
    from correlator.sources._http import make_client
    from correlator.sources.jaeger import JaegerSource
    from correlator.sources.loki import LokiSource
    from correlator.sources.prometheus import PrometheusSource
    from correlator.errors import SourceError

    ok = True
    async with make_client(settings.jaeger) as jc, make_client(settings.loki) as lc, make_client(settings.prometheus) as pc:
        for name, source in (("jaeger", JaegerSource(settings.jaeger, jc)), ("loki", LokiSource(settings.loki, lc)),
                             ("prometheus", PrometheusSource(settings.prometheus, pc))):
            try:
                async with asyncio.timeout(settings.deadline_seconds):
                    await source.ready()
                print(f"{name}: ready ({getattr(settings, name).url})")
            except (SourceError, TimeoutError) as exc:
                ok = False
                print(f"{name}: NOT ready ({getattr(settings, name).url}): {exc or 'timeout'}")
    return 0 if ok else 1

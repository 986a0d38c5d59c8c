"""The access log's fast path (`telemetry.log_access`, bench P3) writes what the logging module wrote: the same
line, byte for byte, to the same stream; and any set-up other than `correlator serve`'s takes the logging path."""

from __future__ import annotations

import io
import json
import logging
import random
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace

from correlator import telemetry
from correlator.api import create_app
from correlator.config import load_settings
from tests.apiclient import TRACE, Backends


@pytest.fixture
def served_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """`configure_logging` as `correlator serve` runs it, onto a captured stderr; everything restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging._srcfile, logging.logThreads, logging.logProcesses,
             logging.logMultiprocessing, telemetry._ours)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    telemetry.configure_logging()
    try:
        yield stream
    finally:
        root.handlers[:], level, logging._srcfile, logging.logThreads, logging.logProcesses, \
            logging.logMultiprocessing, telemetry._ours = saved
        root.setLevel(level)


def _only_ours() -> None:
    """pytest adds its capturing handlers to the root for each test phase: as served, ours is the only one."""
    assert telemetry._ours is not None
    logging.getLogger().handlers[:] = [telemetry._ours]


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    out = [json.loads(line) for line in stream.getvalue().splitlines()]
    out = [line for line in out if line["logger"] == "correlator.access"]  # not the test server's aiohttp.access
    stream.seek(0)
    stream.truncate()
    return out


def _traced() -> bool:
    """An SDK tracer provider is installed (tests/test_self_telemetry.py sets one for the whole process)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _timeless(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Traced, each request has a span of its own: its IDs differ between two rounds (a caller's trace ID aside).
    own = ("span_id",) if _traced() else ()
    return [{k: v for k, v in line.items() if k not in ("ts", "ms", *own)
             and not (own and k == "trace_id" and v != "0af7651916cd43dd8448eb211c80319c")} for line in lines]


async def _requests(client: Any) -> None:
    await client.get(f"/correlate/{TRACE}")
    await client.get("/correlate/not-hex")
    await client.get("/healthz", headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    await client.get("/nowhere")


async def test_the_served_set_up_writes_the_lines_logging_wrote(aiohttp_client: Any, served_logging: io.StringIO,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    client = await aiohttp_client(create_app(load_settings(environ={}), Backends().transports()))
    made: list[str] = []
    real_make = logging.Logger.makeRecord

    def counting(self: logging.Logger, name: str, *args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(name)
        return real_make(self, name, *args, **kwargs)

    monkeypatch.setattr(logging.Logger, "makeRecord", counting)
    _only_ours()
    await _requests(client)
    fast = _lines(served_logging)
    assert "correlator.access" not in made  # the fast path: no LogRecord
    logging.getLogger("correlator.access").addFilter(lambda _record: True)  # any filter: the logging module's path
    try:
        await _requests(client)
    finally:
        logging.getLogger("correlator.access").filters.clear()
    slow = _lines(served_logging)
    assert made.count("correlator.access") == 4
    assert len(fast) == 4 and _timeless(fast) == _timeless(slow)
    assert [line["status"] for line in fast] == [200, 400, 200, 404]
    own_span = {"trace_id", "span_id"} if _traced() else set()
    assert set(fast[0]) == {"ts", "level", "logger", "msg", "method", "route", "status", "ms", *own_span}
    assert fast[2]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"  # the caller's context, as the formatter writes it


def test_a_line_is_the_formatter_s_text_of_the_record_byte_for_byte() -> None:
    formatter = telemetry._JsonFormatter()
    logger = logging.getLogger("correlator.access")
    rng = random.Random(7)
    for _ in range(2000):
        created = rng.choice([rng.uniform(0, 4e9), float(rng.randrange(0, 4_000_000_000)), rng.randrange(0, 10**6) + 0.9995])
        method = rng.choice(["GET", "POST", "DELETE"])
        route = rng.choice(["/correlate/{trace_id}", "/healthz", "unmatched", "/päth \"q\" \ud800"])
        status, ms = rng.choice([200, 400, 404, 503]), round(rng.uniform(0, 5000), 3)
        record = logger.makeRecord("correlator.access", logging.INFO, "(unknown file)", 0, "%s %s %d",
                                   (method, route, status), None, extra={"method": method, "route": route,
                                                                         "status": status, "ms": ms})
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0  # as LogRecord sets them
        assert formatter.access_line(created, method, route, status, ms) == formatter.format(record)


@pytest.mark.parametrize("change", ["handler on the logger", "level above info", "not propagating", "a second root handler",
                                    "logger disabled", "handler level above info"])
def test_any_other_set_up_takes_the_logging_path(served_logging: io.StringIO, change: str) -> None:
    logger, root = logging.getLogger("correlator.access"), logging.getLogger()
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    keep = Keep()
    _only_ours()
    saved = (logger.handlers[:], logger.level, logger.propagate, logger.disabled, root.handlers[:], root.handlers[0].level)
    try:
        if change == "handler on the logger":
            logger.addHandler(keep)
        elif change == "level above info":
            logger.setLevel(logging.WARNING)
        elif change == "not propagating":
            logger.propagate = False
        elif change == "a second root handler":
            root.addHandler(keep)
        elif change == "logger disabled":
            logger.disabled = True
        else:
            root.handlers[0].setLevel(logging.WARNING)
        telemetry.log_access("GET", "/healthz", 200, 0.001)
    finally:
        logger.handlers[:], level, logger.propagate, logger.disabled, root.handlers[:], handler_level = saved
        logger.setLevel(level)
        root.handlers[0].setLevel(handler_level)
        logger.manager._clear_cache()  # type: ignore[attr-defined]
    written = _lines(served_logging)
    if change in ("handler on the logger", "a second root handler"):
        assert [r.getMessage() for r in seen] == ["GET /healthz 200"]  # reached the other handler: logging's path
        assert len(written) == 1
    else:
        assert seen == [] and written == []  # nothing where logging would write nothing

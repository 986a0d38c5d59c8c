"""The correlation as Model Context Protocol tools, for agents (official `mcp` SDK).

Two transports, one set of tools:
- stdio (`correlator mcp`): a desktop or IDE client starts it as a subprocess;
- streamable HTTP at `/mcp` inside `correlator serve` (`streamable_app`, mounted by
  correlator/mcp_mount.py): stateless with JSON answers, so any worker of `serve --workers N` can
  answer any request, and nothing streams through the ASGI bridge.

Each tool validates like the REST API (the same functions, the same texts) before any
backend call, and answers a bad input with a tool error saying what to fix. Crashes reach the
model as "the correlator failed" only: no stack trace, backend URL or token leaves here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any
from urllib.parse import urlencode

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from correlator import __version__
from correlator.config import Settings
from correlator.correlate import Correlator, Outcome
from correlator.errors import CorrelatorError, InvalidInput, ShuttingDown, SourceError, SourceHTTPError, SourceTimeout
from correlator.ids import normalise_span_id, parse_trace_id
from correlator.logfields import extract_trace_context
from correlator.model import Correlation, Exemplar, Window
from correlator.offload import WorkerFailed
from correlator.sources.prometheus import PrometheusSource
from correlator.summary_budget import (
    MAX_BUDGET,
    MIN_BUDGET,
    clean_strings,
    fit_lines,
    group_findings,
    span_text,
    trace_summary,
)
from correlator.timeparams import parse_window

__all__ = ["CorrelatorTools", "build_server", "run_stdio", "standalone_tools", "streamable_app"]

log = logging.getLogger(__name__)

MAX_LOG_LINE_BYTES = 64 * 1024  # as POST /correlate/from-log
_MAX_QUERY = 4096  # as GET /exemplars
_VERDICT_CONCURRENCY = 4
_INLINE_SPANS = 2_000  # a summary of up to this many spans takes a few ms: not worth a thread
_INSTRUCTIONS = (
    "Correlates one request across Jaeger (trace), Loki (log lines) and Prometheus (exemplars) and reads the trace: "
    "critical path, bottleneck, N+1, gaps, error root cause, fan-out. Start with correlate_trace (or trace_from_log / "
    "slow_requests to find a trace, investigate for a whole slow series), then get_span for the details of a span it names."
)

TraceIdArg = Annotated[str, Field(description="Trace ID: 1-32 hex characters, any case (W3C 32, legacy Jaeger 16)")]
StartArg = Annotated[str | None, Field(
    description="Optional time hint: RFC 3339 or Unix s/ms/µs/ns; lets all backends run at once")]
EndArg = Annotated[str | None, Field(description="Optional end of the time hint, same formats as start")]
BudgetArg = Annotated[int, Field(description=f"Most tokens the answer may take ({MIN_BUDGET}-{MAX_BUDGET})")]


def _budget(value: int) -> int:
    if isinstance(value, bool) or not MIN_BUDGET <= value <= MAX_BUDGET:
        raise InvalidInput("budget_tokens", f"must be an integer from {MIN_BUDGET} to {MAX_BUDGET}")
    return value


def _verdict_text(c: Correlation, spans: int | None, duration_ns: int | None) -> str:
    """One line: the top finding of a trace, or why there is none."""
    failed = [name for name, r in c.sources.items() if r.status.value not in ("ok", "not_found")]
    partial = f" (partial: {', '.join(failed)} failed)" if failed else ""
    if spans is None or duration_ns is None:
        return f"trace not in Jaeger; {len(c.logs)} log lines carry its ID{partial}"
    groups = group_findings(c.findings)
    duration = f"{duration_ns / 1e6:.0f}ms, {spans} spans"
    if not groups:
        return f"{duration}; no finding{partial}"
    more = f" (+{len(groups) - 1} more finding groups)" if len(groups) > 1 else ""
    return f"{duration}; {groups[0].first.message}{more}{partial}"


def _invalid(exc: InvalidInput) -> ToolError:
    # The REST API's problem detail, plus the parameter it names: the model fixes that argument.
    return ToolError(f"Invalid input: {exc.param}: {exc.message}")


class CorrelatorTools:
    """The tools' logic, apart from the SDK so tests and transports share it."""

    def __init__(self, settings: Settings, correlator: Callable[[], Correlator], prometheus: Callable[[], PrometheusSource]):
        self.settings = settings
        self._correlator = correlator
        self._prometheus = prometheus

    @property
    def correlator(self) -> Correlator:
        return self._correlator()

    def _more_hint(self, trace_hex: str) -> str:
        base = self.settings.server.public_url.rstrip("/")
        return (f"More: get_span(trace_id, span_id) for a span's attributes, events and lines; budget_tokens up to "
                f"{MAX_BUDGET}; everything: GET {base}/correlate/{trace_hex}")

    def tenant(self, headers: Mapping[str, str] | None) -> str | None:
        """X-Scope-OrgID of an HTTP call, as the REST API reads it (only when server.forward_tenant); none on stdio."""
        if not self.settings.server.forward_tenant or headers is None:
            return None
        tenant = next((v for k, v in headers.items() if k.lower() == "x-scope-orgid"), None)
        if tenant is not None and (not tenant or len(tenant) > 150 or not tenant.isprintable()):
            raise InvalidInput("X-Scope-OrgID", "must be 1-150 printable characters")
        return tenant

    async def _described(self, raw_id: str, start: str | None, end: str | None, tenant: str | None,
                         fn: Callable[..., Any], *args: Any) -> tuple[Outcome, Any]:
        """The outcome, and `fn(correlation, tree, *args)` made from it: a big trace's in the worker process
        that holds its model (the event loop stays free, bench P8), a small one's here."""
        outcome = await self._outcome(raw_id, start, end, tenant)
        big = outcome.prerendered
        correlator = self._correlator()
        if big is None or big.model is None or correlator.offload is None:
            if outcome.tree is not None and len(outcome.tree.by_id) > _INLINE_SPANS:  # big, without a worker: a thread
                return outcome, await asyncio.to_thread(fn, outcome.correlation, outcome.tree, *args)
            return outcome, fn(outcome.correlation, outcome.tree, *args)
        try:
            return outcome, await correlator.offload.describe(big.model, fn, *args)
        except WorkerFailed:  # the worker kept another trace's model since (or restarted): correlate again, once
            correlator.forget(parse_trace_id(raw_id), tenant)
            outcome = await self._outcome(raw_id, start, end, tenant)
            big = outcome.prerendered
            if big is None or big.model is None:
                return outcome, fn(outcome.correlation, outcome.tree, *args)
            try:
                return outcome, await correlator.offload.describe(big.model, fn, *args)
            except WorkerFailed as exc:
                raise ToolError(f"The worker process could not describe this big trace ({exc}); ask again.") from None

    async def _outcome(self, raw_id: str, start: str | None, end: str | None, tenant: str | None) -> Outcome:
        trace_id = parse_trace_id(raw_id)
        hint = parse_window(start, end)
        outcome = await self._correlator().correlate(trace_id, hint, tenant)
        if outcome.http_status == 404:
            states = ", ".join(f"{name} {r.status.value}" for name, r in outcome.correlation.sources.items())
            raise ToolError(f"Trace not found: no source knows trace {trace_id.hex} ({states}). "
                            "Check the ID, or pass start/end around the time the request ran.")
        return outcome

    async def correlate_trace(self, trace_id: str, start: str | None, end: str | None, budget_tokens: int,
                              tenant: str | None = None) -> str:
        budget = _budget(budget_tokens)
        _, text = await self._described(trace_id, start, end, tenant, trace_summary, budget,
                                        self._more_hint(parse_trace_id(trace_id).hex))
        return str(text)

    async def get_span(self, trace_id: str, span_id: str, start: str | None, end: str | None, budget_tokens: int,
                       tenant: str | None = None) -> str:
        budget = _budget(budget_tokens)
        parse_trace_id(trace_id)  # the trace ID first, with the REST text, then the span ID
        span = normalise_span_id(span_id)
        if span is None:
            shown = span_id if len(span_id) <= 64 else span_id[:64] + "…"
            raise InvalidInput("span_id", f"{shown!r} is not a valid span ID: a span ID is 1 to 16 hexadecimal characters")
        outcome, text = await self._described(trace_id, start, end, tenant, span_text, span, budget)
        if text is None:
            raise ToolError(f"Span {span} is not in trace {outcome.correlation.trace_id}; "
                            "correlate_trace lists the spans that matter.")
        return str(text)

    async def trace_from_log(self, line: str, metadata: Mapping[str, str] | None, start: str | None, end: str | None,
                             budget_tokens: int, tenant: str | None = None) -> str:
        budget = _budget(budget_tokens)
        if len(line.encode("utf-8", "surrogatepass")) > MAX_LOG_LINE_BYTES:
            raise InvalidInput("body", f"a log line is at most {MAX_LOG_LINE_BYTES} bytes")
        if not line.strip():
            raise InvalidInput("body", "send the raw log line (text, logfmt or JSON) as the body")
        meta = {str(k): str(v) for k, v in metadata.items()} if metadata else None
        context = extract_trace_context(line, self.settings.loki, meta)
        if context.trace_id is None:
            loki = self.settings.loki
            raise ToolError("No trace ID in this line: none of the configured fields or patterns found a trace ID "
                            f"(fields: {', '.join(loki.trace_id_fields)}; JSONPaths: {', '.join(loki.trace_id_jsonpaths)})")
        outcome, summary = await self._described(context.trace_id, start, end, tenant, trace_summary, budget - 30,
                                                 self._more_hint(context.trace_id))
        where = f", span {context.span_id}" if context.span_id else ""
        return f"The line carries trace {outcome.correlation.trace_id}{where}.\n{summary}"

    async def slow_requests(self, query: str, start: str | None, end: str | None, limit: int,
                            tenant: str | None = None) -> str:
        query = query.strip()
        if not query:
            raise InvalidInput("query", "a PromQL selector is required, e.g. http_server_duration_seconds_bucket")
        if len(query) > _MAX_QUERY:
            raise InvalidInput("query", f"at most {_MAX_QUERY} characters")
        window = parse_window(start, end)
        if isinstance(limit, bool) or not 1 <= limit <= 50:
            raise InvalidInput("limit", "must be an integer from 1 to 50")
        settings = self.settings
        try:
            async with asyncio.timeout(settings.source_deadline(settings.prometheus)):
                found = await self._prometheus().search(query, window.start_ns if window else None,
                                                        window.end_ns if window else None)
        except TimeoutError:
            raise ToolError(f"Prometheus did not answer in time: no answer within {settings.deadline_seconds}s") from None
        except SourceError as exc:
            refused = getattr(exc, "status_code", None) == 400
            raise ToolError(f"{'Prometheus refused the query' if refused else 'Prometheus failed'}: {exc.message}") from None
        slowest: dict[str, Exemplar] = {}
        for ex in sorted(found, key=lambda e: -e.value if not math.isnan(e.value) else math.inf):
            slowest.setdefault(ex.trace_id, ex)
        picked = list(slowest.values())[:limit]
        if not picked:
            return f"No exemplars for {query} in the window; check the selector, or widen start/end."
        gate = asyncio.Semaphore(_VERDICT_CONCURRENCY)

        async def verdict(ex: Exemplar) -> str:
            async with gate:
                return await self._verdict(ex, tenant)

        verdicts = await asyncio.gather(*(verdict(ex) for ex in picked))
        lines = [f"{len(picked)} slowest exemplar traces of {query} (of {len(found)} exemplars), slowest first:"]
        for n, (ex, text) in enumerate(zip(picked, verdicts, strict=True), 1):
            series = ",".join(f"{k}={v}" for k, v in list(ex.series.items())[:4] if k != "__name__")
            lines.append(f"{n}. {ex.value:g} {ex.metric}{{{series}}} trace {ex.trace_id} — {text}")
        lines.append("Next: correlate_trace(trace_id) on the one to explain.")
        return "\n".join(lines)

    async def investigate(self, query: str, start: str | None, end: str | None, limit: int | None,
                          threshold: float | None, budget_tokens: int, tenant: str | None = None) -> str:
        """GET /investigate's text, its input checked by the same function, cut to the budget."""
        from correlator.investigate_api import parse_request
        from correlator.investigate_render import empty_body, investigation_body, investigation_text
        from correlator.investigate_run import investigate

        budget = _budget(budget_tokens)
        raw = {"query": query, "start": start, "end": end, "limit": None if limit is None else str(limit),
               "threshold": None if threshold is None else repr(threshold)}
        wanted = parse_request({k: v for k, v in raw.items() if v is not None}, self.settings, time.time_ns())
        try:
            found = await investigate(self.settings, self._correlator(), self._prometheus(), wanted, tenant)
        except SourceTimeout as exc:
            raise ToolError(f"Prometheus did not answer in time: {exc.message}") from None
        except SourceHTTPError as exc:
            refused = exc.status_code == 400  # Prometheus' bad_data: the caller's PromQL
            raise ToolError(f"{'Prometheus refused the query' if refused else 'Prometheus failed'}: {exc.message}") from None
        except SourceError as exc:
            raise ToolError(f"Prometheus failed: {exc.message}") from None
        body = investigation_body(found, self.settings) if found.traces else empty_body(wanted, found.exemplar_count)
        base = self.settings.server.public_url.rstrip("/")
        everything = f"{base}/investigate?{urlencode({k: v for k, v in raw.items() if v is not None})}"
        return fit_lines(investigation_text(clean_strings(body)), budget,
                         f"More: correlate_trace(trace_id) on a suspect's evidence; everything: GET {everything}")

    async def _verdict(self, ex: Exemplar, tenant: str | None) -> str:
        """One line: the top finding of the trace the exemplar points at, or why there is none."""
        try:
            outcome = await self._correlator().correlate(parse_trace_id(ex.trace_id), Window(ex.timestamp_ns, ex.timestamp_ns),
                                                         tenant)
        except CorrelatorError:
            return "its trace ID is not valid"
        c, tree, big = outcome.correlation, outcome.tree, outcome.prerendered
        if tree is not None:
            return _verdict_text(c, len(tree.by_id), tree.end_ns - tree.start_ns)
        if big is not None and big.trace_end_ns is not None and big.trace_start_ns is not None:  # rendered in the worker
            return _verdict_text(c, c.sources["jaeger"].items, big.trace_end_ns - big.trace_start_ns)
        return _verdict_text(c, None, None)


def build_server(tools: CorrelatorTools) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("correlator", version=__version__, instructions=_INSTRUCTIONS, log_level="WARNING")
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=True)

    async def guarded(ctx: Context[Any, Any] | None, call: Callable[[str | None], Awaitable[str]]) -> str:
        try:
            return await call(tools.tenant(ctx.headers if ctx is not None else None))
        except InvalidInput as exc:
            raise _invalid(exc) from None
        except ToolError:
            raise
        except ShuttingDown:
            raise ToolError("The correlator is shutting down; ask again in a moment.") from None
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("an MCP tool failed")
            raise ToolError("the correlator failed; the error is in its own logs") from None

    @server.tool(annotations=read_only, structured_output=False)
    async def correlate_trace(trace_id: TraceIdArg, start: StartArg = None, end: EndArg = None,
                              budget_tokens: BudgetArg = 2000, ctx: Context[Any, Any] | None = None) -> str:
        """Why was this request slow or failing? The trace joined with its log lines and exemplars, analysed:
        findings first (bottleneck, N+1, gaps, error root cause, with the log lines and span events behind them),
        the critical path, error lines, source statuses, then as much detail as fits budget_tokens."""
        return await guarded(ctx, lambda tenant: tools.correlate_trace(trace_id, start, end, budget_tokens, tenant))

    @server.tool(annotations=read_only, structured_output=False)
    async def get_span(trace_id: TraceIdArg,
                       span_id: Annotated[str, Field(description="Span ID: 1-16 hex characters, as correlate_trace names it")],
                       start: StartArg = None, end: EndArg = None, budget_tokens: BudgetArg = 2000,
                       ctx: Context[Any, Any] | None = None) -> str:
        """One span of a trace: its attributes, events, the log lines and exemplars joined to it, its children."""
        return await guarded(ctx, lambda tenant: tools.get_span(trace_id, span_id, start, end, budget_tokens, tenant))

    @server.tool(annotations=read_only, structured_output=False)
    async def trace_from_log(line: Annotated[str, Field(description="A raw log line: text, logfmt or JSON")],
                             metadata: Annotated[dict[str, str] | None, Field(
                                 description="Optional Loki structured metadata of the line (trace_id, span_id)")] = None,
                             start: StartArg = None, end: EndArg = None, budget_tokens: BudgetArg = 2000,
                             ctx: Context[Any, Any] | None = None) -> str:
        """A log line → the trace it belongs to (the same fields and patterns as Grafana's derived fields), summarised."""
        return await guarded(ctx, lambda tenant: tools.trace_from_log(line, metadata, start, end, budget_tokens, tenant))

    @server.tool(annotations=read_only, structured_output=False)
    async def slow_requests(query: Annotated[str, Field(description="PromQL selector, e.g. http_server_duration_seconds_bucket")],
                            start: StartArg = None, end: EndArg = None,
                            limit: Annotated[int, Field(description="How many traces (1-50)")] = 10,
                            ctx: Context[Any, Any] | None = None) -> str:
        """Metric → traces: the exemplar traces of a series, slowest first, each with a one-line verdict."""
        return await guarded(ctx, lambda tenant: tools.slow_requests(query, start, end, limit, tenant))

    @server.tool(annotations=read_only, structured_output=False)
    async def investigate(query: Annotated[str, Field(description="PromQL selector or histogram of a latency series")],
                          start: StartArg = None, end: EndArg = None,
                          limit: Annotated[int | None, Field(description="How many traces to read (default 20)")] = None,
                          threshold: Annotated[float | None, Field(
                              description="What counts as slow, in the metric's unit (default: from the exemplars)")] = None,
                          budget_tokens: BudgetArg = 2000, ctx: Context[Any, Any] | None = None) -> str:
        """Why is this series slow? Reads many of its exemplar traces, slow against a baseline, and ranks the
        suspects (operations, errors, log messages) by the time they explain; each with its evidence traces."""
        return await guarded(ctx, lambda tenant: tools.investigate(query, start, end, limit, threshold, budget_tokens, tenant))

    return server


# ---------------------------------------------------------------------------------------- transports


@asynccontextmanager
async def standalone_tools(settings: Settings) -> AsyncIterator[CorrelatorTools]:
    """The backends of `correlator mcp` (stdio): built like `correlator correlate` builds them."""
    from correlator.sources._http import make_client
    from correlator.sources.jaeger import JaegerSource
    from correlator.sources.loki import LokiSource

    async with make_client(settings.jaeger) as jc, make_client(settings.loki) as lc, make_client(settings.prometheus) as pc:
        prometheus = PrometheusSource(settings.prometheus, pc)
        correlator = Correlator(settings, JaegerSource(settings.jaeger, jc), LokiSource(settings.loki, lc), prometheus)
        yield CorrelatorTools(settings, lambda: correlator, lambda: prometheus)


async def run_stdio(settings: Settings) -> None:
    async with standalone_tools(settings) as tools:
        await build_server(tools).run_stdio_async()


def streamable_app(settings: Settings, backends: Callable[[], Any]) -> Any:
    """The SDK's ASGI app for /mcp: stateless JSON, so any worker answers any request (correlator/mcp_mount.py)."""
    own: list[Correlator] = []

    def correlator() -> Correlator:
        # The service's correlator hands big traces to a worker process that renders the REST answer
        # and sends back no span tree (offload.py). MCP's texts need the model, so MCP calls use a
        # correlator of their own over the same sources, connection pools and worker, which asks the
        # worker to keep a big trace's model and makes the texts there (the event loop stays free).
        service = backends()
        if getattr(service.correlator, "offload", None) is None:
            return service.correlator  # type: ignore[no-any-return]
        if not own:
            mine = Correlator(settings, service.jaeger, service.loki, service.prometheus, offload=service.correlator.offload)
            mine.keep_models = True
            own.append(mine)
        return own[0]

    tools = CorrelatorTools(settings, correlator, lambda: backends().prometheus)
    return build_server(tools).streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, json_response=True, host=settings.server.host)

"""Big traces are parsed, joined, analysed and rendered in a worker process, off the event loop.

Why: a 100k-span answer is seconds of pure-Python CPU (parse, tree, join, analysis, render);
on the event loop every other request of the worker — a health probe, a cache hit, a small
correlation — would wait for all of it (bench P8). Threads do not help (the GIL: /healthz p50
went 0.5 → 6 ms beside one busy thread), and sending the model back costs as much as building
it (unpickling a 100k-span Outcome: ~0.8 s). So the worker process does everything from the
answer's bytes to the response's bytes, and only small things cross back: the rendered JSON and
text, the findings, placements and source reports.

Identity: the worker runs the very functions the event loop runs for small traces
(`parse_otlp_answer`, `Correlator._assemble`, `correlation_body`, `render_text`), so a big trace's
answer is the one the inline path would give (tests/test_offload.py compares them).

One worker process: on the project's 2 cores the event loop keeps one, big traces queue for the
other. Without a time hint the orchestrator needs the trace's services and span before asking Loki
and Prometheus; the worker keeps the trace it parsed for that (`outline`) until `assemble` asks
for it, and parses again only if it was lost (a restarted worker).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copyreg
import errno
import logging
import multiprocessing
import os
import threading
import types
import weakref
from collections import OrderedDict
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import orjson

from correlator import scratch
from correlator.ids import TraceId
from correlator.model import (
    Correlation,
    Exemplar,
    LogLine,
    SourceReport,
    SourceStatus,
    Span,
    Trace,
    Window,
)
from correlator.spancap import cap_spans

__all__ = ["Offloader", "Outline", "Prerendered", "RawTrace"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Read-only mappings (shared empty metadata, a series' labels) cross to the worker as what they are.
copyreg.pickle(types.MappingProxyType, lambda m: (types.MappingProxyType, (dict(m),)))


@dataclass(frozen=True, slots=True, weakref_slot=True)
class RawTrace:
    """A Jaeger v3 answer too big for the event loop, not parsed yet (JaegerSource.fetch's raw_above)."""

    body: bytes | bytearray
    trace_id: str
    max_spans: int
    what: str  # "GET /api/v3/traces/…", for error messages
    path: str | None = None  # the body, written to a file for the worker (then `body` is empty)

    @classmethod
    def in_file(cls, path: str, trace_id: str, max_spans: int, what: str) -> RawTrace:
        """The body the client wrote to `path` as it arrived (sources/_spool.py). The file is this object's:
        `Offloader.outline` removes it once the worker has read it, and it goes with the object in any case
        (a correlation cancelled or refused before the outline)."""
        raw = cls(b"", trace_id, max_spans, what, path)
        _owned[path] = weakref.finalize(raw, _disown, path)
        return raw


# Files RawTrace.in_file owns → their finalizers: removed once, whichever comes first (the outline, the object's end).
_owned: dict[str, weakref.finalize[Any, Any]] = {}


def _disown(path: str) -> None:
    _owned.pop(path, None)
    _remove_later(path)


def _release(path: str | None) -> None:
    """Remove a RawTrace's file now (off the loop); an owned one only once."""
    owner = _owned.get(path) if path is not None else None
    if owner is not None:
        owner()
    else:
        _remove_later(path)


@dataclass(frozen=True, slots=True)
class Outline:
    """What the orchestrator needs from a big trace before asking Loki and Prometheus."""

    token: int  # the worker keeps the parsed trace under it, for `assemble`
    services: tuple[str, ...]
    start_ns: int
    end_ns: int
    untraced_window: Window  # where the trace's untraced lines are looked for (correlate.untraced_scope)
    root: Span | None = None  # the root span, without attributes or events: its standing is looked up before assembly


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Prerendered:
    """A big trace's answer, rendered in the worker.

    The JSON (34 MB at 100k spans) stays in a file the worker wrote (in /dev/shm where there is one),
    not in the service process: the kernel sends it from there (file_answer.py), and the file goes when
    the last reference to this object does (the cache, a response being sent). It says
    `"cached": false` at `cached_at`.
    """

    status: int  # 200, or 404 (problem+json)
    path: str
    size: int
    cached_at: int  # offset of the top-level `false` to turn into `true` for a cache hit; -1 if none
    text: str
    found: bool
    trace_end_ns: int | None
    html_path: str | None = None  # the page (web/view.py), rendered beside the JSON; None for a 404
    html_size: int = 0
    model: int | None = None  # the worker kept the model under this token (`Offloader.describe`), for MCP's texts
    trace_start_ns: int | None = None

    def json_pieces(self, cached: bool) -> list[tuple[int, int] | bytes]:
        """The JSON answer as slices of its file (file_answer.FileAnswer sends them), `true` in the middle on a cache hit."""
        if cached and self.cached_at >= 0:
            return [(0, self.cached_at), b"true", (self.cached_at + len(b"false"), self.size)]
        return [(0, self.size)]

    def json_body(self, cached: bool) -> bytes:
        """The whole JSON answer at once (for callers that need bytes; the API streams it)."""
        with open(self.path, "rb") as file:
            data = file.read()
        if cached and self.cached_at >= 0:
            data = b"".join((data[:self.cached_at], b"true", data[self.cached_at + 5:]))
        return data


class WorkerFailed(Exception):
    """The worker could not make sense of the answer, or died; the message says which."""


# ------------------------------------------------------------------------------ in the worker process

# Rendered answers wait here for the service to send them, named by the service (scratch.py: a killed one's are swept).
_ANSWERS = scratch.DIRECTORY
_kept: OrderedDict[int, tuple[Trace | None, str | None]] = OrderedDict()  # token → (trace, what the cap dropped)
_KEEP = KEEP_OUTLINES = 2  # outlines whose assembly has not come yet (a correlation refused in between leaves one)
# Assembled models MCP asked to keep (~200 MB at 100k spans each): its texts are made here, from them.
_models: OrderedDict[int, Any] = OrderedDict()
_MODELS = 1


def _parse(raw: RawTrace) -> tuple[Trace | None, str | None]:
    """The bytes → the trace exactly as JaegerSource.fetch makes it inline (cap and error words included)."""
    from correlator.errors import SourceProtocolError
    from correlator.sources._http import HttpAnswer
    from correlator.sources.jaeger import SOURCE, _parsed, parse_otlp_answer

    body = raw.body
    if raw.path is not None:
        with open(raw.path, "rb") as file:
            body = file.read()
    try:
        trace = _parsed(HttpAnswer(200, body, "", {}), raw.what, parse_otlp_answer, body, raw.trace_id)
    except SourceProtocolError as exc:
        raise WorkerFailed(str(exc)) from None
    if trace is None:
        raise WorkerFailed(str(SourceProtocolError(SOURCE, f"{raw.what}: 200 without a `result` object")))
    if not trace.spans:
        return None, None
    kept, cut = cap_spans(trace, raw.max_spans)
    return kept, cut.sentence() if cut is not None else None


def _outline(raw: RawTrace, token: int, clock_skew_ms: float) -> Outline | None:
    from correlator.correlate import untraced_scope

    trace, cut = _parse(raw)
    _kept[token] = (trace, cut)
    while len(_kept) > _KEEP:
        _kept.popitem(last=False)
    if trace is None:
        return None
    services, untraced_window = untraced_scope(trace, clock_skew_ms)
    root = min(trace.spans, key=lambda sp: (sp.parent_span_id is not None, sp.start_ns, sp.span_id))
    return Outline(token, tuple(services), trace.start_ns, trace.end_ns, untraced_window,
                   replace(root, attributes={}, events=(), links=()))


@dataclass(frozen=True, slots=True)
class _Assembled:
    prerendered: Prerendered
    light: Correlation  # without the trace, the logs and the exemplars (the loop has those)
    then: Any = None  # `then`'s result, when the caller asked for one (investigate's digest of the trace)


def _assemble(settings: Any, trace_id: TraceId, window: Window, raw: RawTrace, token: int | None,
              reports: dict[str, SourceReport], logs: tuple[LogLine, ...], exemplars: tuple[Exemplar, ...],
              untraced: Any, standings: Any = None, keep_model: int | None = None, then: Any = None) -> _Assembled:
    from correlator.correlate import Correlator
    from correlator.render import correlation_body
    from correlator.report import render_text
    from correlator.sources import SourceResult

    kept = _kept.pop(token, None) if token is not None else None
    if kept is None and token is not None:
        raise WorkerFailed("jaeger: the worker lost the parsed trace (it was restarted); ask again")
    trace, cut = kept if kept is not None else _parse(raw)
    jaeger = reports["jaeger"]
    if trace is None:
        jaeger = replace(jaeger, status=SourceStatus.NOT_FOUND, items=0)
    else:
        jaeger = replace(jaeger, items=len(trace.spans), truncated=jaeger.truncated or cut is not None, cut=cut or jaeger.cut)
    correlator = Correlator(settings, None, None, None)  # type: ignore[arg-type]  # only its pure assembly is used
    outcome = correlator._assemble(
        trace_id, window,
        (jaeger, SourceResult(trace, truncated=cut is not None, cut=cut) if trace is not None else None),
        (reports["loki"], SourceResult(logs)), (reports["prometheus"], SourceResult(exemplars)), untraced,
    )
    # Only written out (the JSON, the page's data block): spans and lines as orjson's bytes; the text and the page read
    # the few entries they show through render.log_entries.
    body = correlation_body(outcome, settings, spans_as_json=True, lines_as_json=True)
    if standings is not None:  # looked up by the service before this assembly (api adds them to inline answers)
        from correlator.standing_run import _root_without_exemplar, add_standings

        if _root_without_exemplar(outcome.correlation) is None:  # an exemplar sits on the root: as inline, its standing speaks
            standings = tuple(s for s in standings if not s.exemplar_id.startswith("root-"))
        add_standings(body, outcome.correlation, standings)
    status = outcome.http_status
    if status == 404:  # as api._respond words it
        problem = {"type": "about:blank", "title": "Trace not found", "status": 404,
                   "detail": f"no source knows trace {body['trace_id']}", "sources": body["sources"]}
        json, cached_at = orjson.dumps(problem), -1
    else:
        json = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
        # The top-level flag sits just before "links" (whose values are URLs: no raw quote in them).
        cached_at = json.rfind(b',"cached":false,"links":')
        cached_at = cached_at + len(b',"cached":') if cached_at >= 0 else -1
    c = outcome.correlation
    text = render_text(outcome, body)
    html_path, html_size = None, 0
    if status != 404:  # the page too (~0.2 s at 100k spans): a browser asking must not wait for the loop either
        from correlator.web.view import render_correlation

        html = render_correlation(body, outcome, settings)
        html_path, html_size = _write(html), len(html)
    if keep_model is not None:
        _models[keep_model] = outcome
        while len(_models) > _MODELS:
            _models.popitem(last=False)
    prerendered = Prerendered(status, _write(json), len(json), cached_at, text, outcome.found,
                              c.trace.end_ns if c.trace is not None else None, html_path, html_size, keep_model,
                              c.trace.start_ns if c.trace is not None else None)
    extra = then[0](c, outcome.tree, *then[1]) if then is not None and outcome.tree is not None else None
    return _Assembled(prerendered, replace(c, trace=None, logs=(), exemplars=(), sources=dict(c.sources)), extra)


def _describe(token: int, fn: Any, args: tuple[Any, ...]) -> Any:
    outcome = _models.get(token)
    if outcome is None:
        raise WorkerFailed("the worker no longer holds this trace's model")
    return fn(outcome.correlation, outcome.tree, *args)


# Unlinking a 34 MB tmpfs file frees its pages: 7-11 ms of a blocked event loop (bench P8). A thread does it.
_unlinker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="correlator-unlink")


def _remove_later(*paths: str | None) -> None:
    """`_remove` off the event loop; at once when the thread is gone (the interpreter is exiting)."""
    try:
        _unlinker.submit(_remove, *paths)
    except RuntimeError:
        _remove(*paths)


def _remove(*paths: str | None) -> None:
    for path in paths:
        if path is None:
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _discard_unawaited(job: concurrent.futures.Future[Any]) -> None:
    if job.cancelled() or job.exception() is not None:
        return
    done = job.result()
    if isinstance(done, _Assembled):
        _remove_later(done.prerendered.path, done.prerendered.html_path)


def _write(data: bytes | bytearray) -> str:
    fd, path = scratch.mkstemp("answer", _ANSWERS)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    return path


def _start_worker(owner: str | None, answers: str | None) -> None:
    global _ANSWERS
    os.nice(10)  # when the cores are busy the kernel runs the event loop first, the big trace after
    scratch.adopt(owner)  # its files are the service's: swept if the service is killed
    _ANSWERS = answers  # where the service looks for them
    # A service killed outright (SIGKILL, the OOM killer) does not stop its pool: the worker went on forever, an
    # orphan holding the models it kept (hundreds of MB) and the resource tracker. It ends with its service.
    service = multiprocessing.parent_process()
    if service is not None:
        threading.Thread(target=_end_with, args=(service,), name="correlator-end-with-service", daemon=True).start()


def _end_with(service: Any) -> None:
    service.join()  # returns once the service has ended, however it ended (its end of a pipe is closed by the kernel)
    os._exit(1)


def _warm() -> int:
    import correlator.correlate
    import correlator.render
    import correlator.report
    import correlator.sources.jaeger  # noqa: F401  (imports paid once, not by the first big trace)

    return os.getpid()


# ------------------------------------------------------------------------------ on the event loop


def _no_room(exc: OSError) -> WorkerFailed:
    """A partial answer naming Jaeger, not a 500: the big trace could not go through its files (a container's /dev/shm
    is 64 MB unless given more — `shm_size` — and a cached 100k-span answer is ~74 MB) or to the worker."""
    where = f" ({exc.filename})" if exc.filename else ""
    hint = "; give /dev/shm more room (a container's: shm_size)" if exc.errno == errno.ENOSPC else ""
    return WorkerFailed(f"jaeger: this big trace could not be handed to the worker or back: {exc.strerror or exc}{where}{hint}")


class Offloader:
    """The worker process, and the size above which a trace goes to it (`server.offload_bytes`)."""

    def __init__(self, threshold_bytes: int) -> None:
        self.threshold = threshold_bytes
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._tokens = 0

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            # spawn: never fork a process that runs an event loop and client threads.
            self._pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                                initializer=_start_worker,
                                                                initargs=(scratch.claim(_ANSWERS), _ANSWERS))
        return self._pool

    async def _run(self, fn: Any, *args: Any) -> Any:
        job = self._executor().submit(fn, *args)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            # Given up on (the deadline, the service closing) while the worker runs it: its answer's files, written
            # when it ends, would have no owner (34 MB of tmpfs at 100k spans each).
            job.add_done_callback(_discard_unawaited)
            raise
        except BrokenProcessPool:
            log.error("the offload worker died (out of memory?); starting a new one")
            self._pool = None
            raise WorkerFailed("jaeger: the worker parsing this big trace died (see the service's log)") from None
        except OSError as exc:  # its files found no room (a full /dev/shm), or no worker could be started
            raise _no_room(exc) from None

    async def warm(self) -> None:
        """Start the worker and import what it needs, before the first big trace."""
        await self._run(_warm)

    async def _handed_over(self, raw: RawTrace) -> RawTrace:
        """The body in a file, written by a thread (the GIL is free while the kernel copies): pickled
        into the worker's pipe it was a 32 MB copy holding the GIL, a stall of every request (bench P8)."""
        if not raw.body:
            return raw
        try:
            path = await asyncio.to_thread(_write, raw.body)
        except OSError as exc:
            raise _no_room(exc) from None
        return replace(raw, body=b"", path=path)

    async def outline(self, raw: RawTrace, settings: Any) -> Outline | None:
        self._tokens += 1
        token = self._tokens  # taken before the await: two big traces outlined at once must not share one
        try:
            raw = await self._handed_over(raw)
            result: Outline | None = await self._run(_outline, raw, token, settings.join.clock_skew_ms)
        finally:
            _release(raw.path)
        return result

    async def assemble(self, settings: Any, trace_id: TraceId, window: Window, raw: RawTrace, token: int | None,
                       reports: dict[str, SourceReport], logs: tuple[LogLine, ...], exemplars: tuple[Exemplar, ...],
                       untraced: Any, standings: Any = None, keep_model: bool = False,
                       then: Any = None) -> tuple[Correlation, Prerendered, Any]:
        """`then` (a module-level function and its extra arguments): `fn(correlation, tree, *args)` made in the
        worker right after the assembly, its result returned third (None without a trace)."""
        raw = await self._handed_over(raw)
        model = None
        if keep_model:
            self._tokens += 1
            model = self._tokens
        try:
            done: _Assembled = await self._run(_assemble, settings, trace_id, window, raw, token, reports, logs, exemplars,
                                               untraced, standings, model, then)
        finally:
            _release(raw.path)
        # The file goes with the last reference to its answer (the cache, a response being sent).
        weakref.finalize(done.prerendered, _remove_later, done.prerendered.path, done.prerendered.html_path)
        # The model stays in the worker; what crosses back is what callers other than the renderers use.
        return replace(done.light, logs=logs, exemplars=exemplars), done.prerendered, done.then

    async def describe(self, model: int, fn: Any, *args: Any) -> Any:
        """`fn(correlation, tree, *args)` in the worker, on the model an `assemble(keep_model=True)` kept (a
        module-level function: it is pickled by name). WorkerFailed when the worker no longer holds it."""
        return await self._run(_describe, model, fn, args)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

"""Untraced lookups shared between correlations (`join.untraced`, `join.untraced_share_seconds`).

Under load many correlations ask for the untraced lines of the same services over overlapping
windows, and Jaeger for the other traces of the same services. Here each such lookup is asked once
per (tenant, service set or service, window aligned to whole seconds), kept for a few seconds, and
shared by every correlation in flight meanwhile (single flight). Each correlation's own answer is
cut out of the wider one client-side, exactly as a lookup of its own window would have answered
(the pure `lines_within` and `spans_within`); when that cannot be told — the wider answer was cut by
its limit or its search depth before the end of the window — the correlation asks for its own
window, as before. A lookup that failed is never kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from correlator.model import LogLine, Window
from correlator.single_flight import cancelling_itself
from correlator.sources import SourceResult

__all__ = ["SHARED_LINE_LIMIT", "LinesAnswer", "SearchAnswer", "SharedLookups", "aligned", "as_asked", "clusters", "lines_within",
           "spans_within"]

_SECOND_NS = 1_000_000_000
SHARED_LINE_LIMIT = 5000  # Loki's default max_entries_limit_per_query: a shared window holds more than one trace's
_SEARCH_DEPTH_FACTOR = 4  # a shared search asks for this many times the traces of one correlation's
_MAX_ENTRIES = 64  # per kind and worker

A = TypeVar("A")


@dataclass(frozen=True, slots=True)
class LinesAnswer:
    """What one untraced-lines query returned: every entry (oldest first) with whether it names a trace."""

    window: Window  # inclusive
    services: frozenset[str] | None  # None: the configured static selector (every service)
    entries: tuple[tuple[LogLine, bool], ...]
    cut: bool  # the query's limit was reached: entries at or after the last one's instant may be missing


@dataclass(frozen=True, slots=True)
class SearchAnswer:
    """What one Jaeger search for a service's traces returned: each trace's spans of that service."""

    window: Window  # span start times searched (inclusive)
    traces: Mapping[str, tuple[tuple[int, int], ...]]
    complete: bool  # fewer traces than the search depth: nothing else matched
    known: bool = True  # False: Jaeger could not be asked (kept too, briefly: "unknown" for every correlation)


def aligned(window: Window) -> Window:
    """`window` widened to whole seconds, so that nearby correlations ask for the same one."""
    start = window.start_ns - window.start_ns % _SECOND_NS
    end = window.end_ns + (-window.end_ns) % _SECOND_NS
    return Window(start, end)


def clusters(windows: Sequence[Window], spread: float = 8.0) -> list[Window]:
    """`windows` merged into joint windows, each at most `spread` × as long as its members together: one
    query over a joint window scans at most that much more of the backend than one query per member would,
    and saves the requests (pure; greedy in time order)."""
    out: list[Window] = []
    members = 0
    for window in sorted(windows, key=lambda w: w.start_ns):
        width = max(1, window.end_ns - window.start_ns)
        if out:
            last = out[-1]
            joint = Window(last.start_ns, max(last.end_ns, window.end_ns))
            if joint.end_ns - joint.start_ns <= spread * (members + width):
                out[-1], members = joint, members + width
                continue
        out.append(window)
        members = width
    return out


def _covers(outer: Window, inner: Window) -> bool:
    return outer.start_ns <= inner.start_ns and inner.end_ns <= outer.end_ns


def lines_within(answer: LinesAnswer, services: Sequence[str], window: Window,
                 limit: int) -> SourceResult[tuple[LogLine, ...]] | None:
    """The answer a query for `services` over `window` with `limit` would give (its oldest `limit` entries,
    those naming a trace dropped, truncated when `limit` was reached), or None when `answer` cannot tell."""
    if not _covers(answer.window, window) or (answer.services is not None and not answer.services.issuperset(services)):
        return None
    wanted = set(services)
    start, end = window.start_ns, window.end_ns
    inside = [(line, named) for line, named in answer.entries
              if line.service in wanted and start <= line.timestamp_ns <= end]
    if answer.cut and answer.entries:
        horizon = answer.entries[-1][0].timestamp_ns  # complete only strictly before it
        if end >= horizon:
            inside = [entry for entry in inside if entry[0].timestamp_ns < horizon]
            if len(inside) < limit:
                return None
    first = inside[:limit]
    return SourceResult(tuple(line for line, named in first if not named), truncated=len(inside) >= limit)


def as_asked(answer: LinesAnswer, services: Sequence[str]) -> SourceResult[tuple[LogLine, ...]]:
    """A query of exactly one correlation's window and limit, as `LokiSource.fetch_untraced` answers it."""
    wanted = set(services)
    return SourceResult(tuple(line for line, named in answer.entries if line.service in wanted and not named),
                        truncated=answer.cut)


def spans_within(answer: SearchAnswer, search: Window, exclude_hex: str,
                 depth: int) -> tuple[bool, list[tuple[int, int]] | None]:
    """(usable, spans): what a search over `search` with `depth` would give — the spans of the other traces
    with a span of the service starting in it, None when `depth` traces match (more may) — or (False, None)."""
    if not _covers(answer.window, search):
        return False, None
    if not answer.known:
        return True, None
    if not answer.complete:
        return False, None
    # A search of exactly this window: every trace Jaeger returned matched it.
    exact = answer.window == search
    matching = {trace: spans for trace, spans in answer.traces.items()
                if exact or any(search.start_ns <= start <= search.end_ns for start, _end in spans)}
    if len(matching) >= depth:
        return True, None
    return True, [span for trace, spans in matching.items() if trace != exclude_hex for span in spans]


@dataclass(slots=True)
class _Entry(Generic[A]):
    key: tuple[object, ...]  # (tenant, services) / (tenant, service)
    window: Window
    services: frozenset[str] | None
    expires: float
    answer: asyncio.Future[A]


class _Store(Generic[A]):
    """Answers in flight or kept until they expire; failures are dropped as soon as they happen."""

    def __init__(self, ttl_seconds: float, clock: Callable[[], float]) -> None:
        self.ttl, self.clock = ttl_seconds, clock
        self.entries: list[_Entry[A]] = []
        # Every query running, in the table or not: one shared for `ttl` may run on to its source's deadline (longer),
        # forgotten by the table meanwhile; `aclose` ends them all.
        self.running: set[asyncio.Future[A]] = set()

    def candidates(self, key: tuple[object, ...]) -> list[_Entry[A]]:
        now = self.clock()
        self.entries = [e for e in self.entries if e.expires > now]
        return [e for e in reversed(self.entries) if e.key == key]

    def start(self, key: tuple[object, ...], window: Window, services: frozenset[str] | None,
              fetch: Awaitable[A]) -> _Entry[A]:
        task: asyncio.Future[A] = asyncio.ensure_future(fetch)
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        entry = _Entry(key, window, services, self.clock() + self.ttl, task)
        self.entries.append(entry)
        if len(self.entries) > _MAX_ENTRIES:  # memory: a shared answer holds up to 5,000 lines; drop the oldest kept
            oldest = next((e for e in self.entries if e.answer.done()), None)
            if oldest is not None:
                self.entries.remove(oldest)

        def settle(done: asyncio.Future[A]) -> None:
            if done.cancelled() or done.exception() is not None:  # retrieves it: never "never retrieved"
                self.entries = [e for e in self.entries if e is not entry]
        task.add_done_callback(settle)
        return entry

    async def aclose(self) -> None:
        """Cancel the queries still in flight and wait until they have ended (their connections closed)."""
        running = [task for task in self.running if not task.done()]
        self.entries, self.running = [], set()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


LinesFetch = Callable[[Window, frozenset[str] | None, int], Awaitable[LinesAnswer]]
SearchFetch = Callable[[str, Window, int], Awaitable[SearchAnswer]]


class SharedLookups:
    """One worker's shared untraced lookups. `fetch` callables do the real query (and count it, and pass
    the bulkheads); a waiter cancelled or timed out leaves the shared query running for the others."""

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._lines: _Store[LinesAnswer] = _Store(ttl_seconds, clock)
        self._searches: _Store[SearchAnswer] = _Store(ttl_seconds, clock)

    async def aclose(self) -> None:
        """End every shared lookup still running: none may outlive the service (and its clients) that started it."""
        await self._lines.aclose()
        await self._searches.aclose()

    def prefetch_lines(self, fetch: LinesFetch, window: Window, services: Sequence[str] | None, tenant: str | None) -> None:
        """Start a shared query now (a hint's window before the trace is known; an investigation's joint window)."""
        wanted = frozenset(services) if services is not None else None
        key = (tenant, wanted)
        wide = aligned(window)
        known = self._lines.candidates(key) + (self._lines.candidates((tenant, None)) if wanted is not None else [])
        if not any(_covers(e.window, wide) for e in known):
            self._lines.start(key, wide, wanted, fetch(wide, wanted, SHARED_LINE_LIMIT))

    def lines_now(self, services: Sequence[str], window: Window, limit: int,
                  tenant: str | None) -> SourceResult[tuple[LogLine, ...]] | None:
        """What `lines` answers when a finished shared query already gives it (nothing to wait for: no task,
        no timeout; bench P3), else None (then `lines` decides, in the same order)."""
        wanted = frozenset(services)
        for key in ((tenant, wanted), (tenant, None)):
            for entry in self._lines.candidates(key):
                if _covers(entry.window, window):
                    answer = entry.answer
                    if not answer.done():
                        return None
                    if answer.cancelled() or answer.exception() is not None:
                        continue  # as `lines`: that shared query failed
                    return lines_within(answer.result(), services, window, limit)
        return None

    async def lines(self, fetch: LinesFetch, services: Sequence[str], window: Window, limit: int,
                    tenant: str | None) -> SourceResult[tuple[LogLine, ...]]:
        wanted = frozenset(services)
        for key in ((tenant, wanted), (tenant, None)):
            for entry in self._lines.candidates(key):
                if _covers(entry.window, window):
                    try:
                        answer = await asyncio.shield(entry.answer)
                    except asyncio.CancelledError:
                        if entry.answer.cancelled() and not cancelling_itself():  # the shared query's end, not this waiter's
                            continue
                        raise
                    except Exception:  # that shared query failed: ask on our own
                        continue
                    found = lines_within(answer, services, window, limit)
                    if found is not None:
                        return found
                    if entry.window == aligned(window) and entry.services == wanted:
                        return as_asked(await fetch(window, wanted, limit), services)  # cut before our window's end
        wide = aligned(window)
        entry = self._lines.start((tenant, wanted), wide, wanted, fetch(wide, wanted, max(limit, SHARED_LINE_LIMIT)))
        found = lines_within(await asyncio.shield(entry.answer), services, window, limit)
        if found is not None:
            return found
        return as_asked(await fetch(window, wanted, limit), services)  # the shared answer was cut before our window's end

    def prefetch_search(self, fetch: SearchFetch, service: str, search: Window, depth: int, tenant: str | None) -> None:
        key = (tenant, service)
        wide = aligned(search)
        if not any(_covers(e.window, wide) for e in self._searches.candidates(key)):
            self._searches.start(key, wide, None, fetch(service, wide, depth))

    def has_search(self, service: str, search: Window, tenant: str | None) -> bool:
        """Whether a finished shared search covers `search` (asking costs nothing then)."""
        return any(e.answer.done() and not e.answer.cancelled() and e.answer.exception() is None
                   and _covers(e.window, search) for e in self._searches.candidates((tenant, service)))

    def other_traces_now(self, service: str, search: Window, exclude_hex: str, depth: int,
                         tenant: str | None) -> tuple[bool, list[tuple[int, int]] | None]:
        """(True, what `other_traces` answers) when a finished shared search already gives it, else (False, None)."""
        for entry in self._searches.candidates((tenant, service)):
            if _covers(entry.window, search):
                answer = entry.answer
                if not answer.done():
                    return False, None
                if answer.cancelled() or answer.exception() is not None:
                    continue
                usable, spans = spans_within(answer.result(), search, exclude_hex, depth)
                if usable:
                    return True, spans
        return False, None

    async def other_traces(self, fetch: SearchFetch, service: str, search: Window, exclude_hex: str, depth: int,
                           tenant: str | None) -> list[tuple[int, int]] | None:
        """The spans of `service` in other traces with a span of it starting in `search` (None: unknown)."""
        key = (tenant, service)
        for entry in self._searches.candidates(key):
            if _covers(entry.window, search):
                try:
                    answer = await asyncio.shield(entry.answer)
                except asyncio.CancelledError:
                    if entry.answer.cancelled() and not cancelling_itself():  # the shared search's end, not this waiter's
                        continue
                    raise
                except Exception:  # that shared search failed: ask on our own
                    continue
                usable, spans = spans_within(answer, search, exclude_hex, depth)
                if usable:
                    return spans
        wide = aligned(search)
        entry = self._searches.start(key, wide, None, fetch(service, wide, depth * _SEARCH_DEPTH_FACTOR))
        usable, spans = spans_within(await asyncio.shield(entry.answer), search, exclude_hex, depth)
        if usable:
            return spans
        usable, spans = spans_within(await fetch(service, search, depth), search, exclude_hex, depth)
        return spans if usable else None

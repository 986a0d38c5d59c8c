"""Looking up where a correlated trace stands (see standing.py), cached once its windows are past.

One instant query per distinct exemplar series and second (at most `_MAX_LOOKUPS` per trace),
concurrently, inside the Prometheus source deadline; a failed or late lookup makes that
exemplar's standing "unknown" with the reason, never the correlation fail. A standing whose
5-minute window ended more than a minute ago no longer changes: it is cached with the trace, so
a cached correlation costs no backend call.

The query is evaluated at the exemplar's time + 2.5 minutes rounded to the whole second (the window
is centred on the exemplar to within half a second of its 300), and each (tenant, series, second)
is asked once for every correlation that needs it within `_SHARE_SECONDS` (single_flight.py): under
load, the traces of one route in one second ask Prometheus once, not once each (bench P3). As with
any answer, one given up to that long ago may miss samples scraped since.
"""

from __future__ import annotations

import asyncio
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from correlator.bulkhead import Bulkhead, Overloaded, admitted
from correlator.cache import TTLCache
from correlator.config import Settings
from correlator.errors import SourceError
from correlator.model import Correlation, Exemplar, SourceReport, Span
from correlator.single_flight import SingleFlight
from correlator.sources.prometheus import PrometheusSource
from correlator.standing import Buckets, Standing, buckets_of, histogram_query, root_exemplar, standing_in, unknown
from correlator.timeparams import rfc3339_ns

__all__ = ["StandingLookup", "standing_body"]

_MAX_LOOKUPS = 10
_SETTLE_NS = 60 * 1_000_000_000
_SECOND_NS = 1_000_000_000
_CENTRE_NS = 150 * _SECOND_NS  # the query's instant is this long after the exemplar (its 5-minute window is centred)
_SHARE_SECONDS = 2.0


class _Passing(str):
    """A reason that may not hold next time (a timeout, an error, a full bulkhead): never cached."""


class StandingLookup:
    def __init__(self, settings: Settings, wall_clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.bulkheads: Mapping[str, Bulkhead] = {}  # the service's (api.py): standing queries count against them
        self._cache: TTLCache[tuple[Standing, ...]] = TTLCache(settings.cache.max_entries, settings.cache.ttl_seconds)
        self._wall = wall_clock
        # Each answer kept as `buckets_of` reads it: read once, not once per exemplar and correlation sharing it.
        self._shared: SingleFlight[Buckets] = SingleFlight(_SHARE_SECONDS)

    async def aclose(self) -> None:
        """End the shared queries still running (a correlation that gave up leaves its query to the others)."""
        await self._shared.aclose()

    async def lookup(self, prometheus: PrometheusSource, correlation: Correlation, tenant: str | None,
                     budget: float | None = None) -> tuple[Standing, ...]:
        """A standing per exemplar of the trace, plus one for the root span (id `root-<span>`) when no
        exemplar sits on it and a configured latency histogram knows it. `budget`: seconds left of
        the request's deadline (default: the Prometheus source deadline)."""
        return await self.lookup_parts(prometheus, correlation.trace_id, correlation.sources.get("prometheus"),
                                       correlation.exemplars, _root_without_exemplar(correlation), tenant, budget)

    async def lookup_parts(self, prometheus: PrometheusSource, trace_id: str, report: SourceReport | None,
                           exemplars: Sequence[Exemplar], root: Span | None, tenant: str | None,
                           budget: float | None = None) -> tuple[Standing, ...]:
        """`lookup` from its parts: a big trace's come from the worker's outline, before its assembly."""
        if report is not None and report.status.value not in ("ok", "not_found"):
            # It just failed or timed out for this very correlation: do not wait on it again.
            return tuple(unknown(ex, f"Prometheus {report.status.value} in this correlation") for ex in exemplars)
        wanted = list(exemplars)
        if root is not None:
            wanted += [ex for ex in (root_exemplar(t, root) for t in self.settings.prometheus.root_histograms) if ex]
        if not wanted:
            return ()
        key = (tenant, trace_id)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        limit = self.settings.source_deadline(self.settings.prometheus)
        budget = limit if budget is None else min(limit, budget)
        if budget <= 0:
            return tuple(unknown(ex, "no time left in the deadline") for ex in exemplars)
        found = await self._lookup(prometheus, wanted, tenant, budget)
        if root is not None:  # the first configured histogram that knows the root span; none: no root standing
            rooted = [s for s in found if s.exemplar_id.startswith("root-")]
            kept = next((s for s in rooted if s.known), None)
            found = tuple(s for s in found if not s.exemplar_id.startswith("root-")) + ((kept,) if kept else ())
        now_ns = int(self._wall() * 1e9)
        settled = all(s.window.end_ns + _SETTLE_NS < now_ns for s in found)
        if settled and all(s.known or (s.reason and not isinstance(s.reason, _Passing)) for s in found):
            self._cache.put(key, found)
        return found

    async def _lookup(self, prometheus: PrometheusSource, exemplars: Sequence[Exemplar],
                      tenant: str | None, budget: float) -> tuple[Standing, ...]:
        s = self.settings
        prom_tenant = tenant if s.prometheus.forward_tenant else None
        queries: dict[tuple[str, int], list[Exemplar]] = {}
        keys = [None if (query := histogram_query(ex)) is None else (query, _instant(ex)) for ex in exemplars]
        for ex, key in zip(exemplars, keys, strict=True):
            if key is not None:
                queries.setdefault(key, []).append(ex)
        asked = list(queries)[:_MAX_LOOKUPS]

        async def ask(query: str, at_ns: int) -> Buckets:
            # Each query takes a Prometheus slot like the correlation's own (bulkhead.py): a flood of
            # correlations must not reach Prometheus through their standings. Shared, it is bounded by the
            # source's deadline, not by the budget left to whichever correlation asked first.
            async with asyncio.timeout(s.source_deadline(s.prometheus)), admitted(self.bulkheads, {"prometheus": 1}):
                return buckets_of(await prometheus.bucket_counts(query, at_ns, prom_tenant))

        async def one(query: str, at_ns: int) -> Buckets | _Passing:
            try:
                async with asyncio.timeout(budget):  # ours, whoever asked the shared query
                    return await self._shared.get((prom_tenant, query, at_ns), lambda: ask(query, at_ns))
            except TimeoutError:
                return _Passing(f"Prometheus did not answer within {budget:.1f}s")
            except Overloaded as exc:
                return _Passing(f"not looked up: too many Prometheus queries in flight ({exc})")
            except SourceError as exc:
                return _Passing(str(exc))

        kept = [self._shared.now((prom_tenant, query, at_ns)) for query, at_ns in asked]
        answers: dict[tuple[str, int], Buckets | _Passing]
        if all(ready for ready, _answer in kept):  # under load: every query answered already, nothing to wait for
            answers = {key: answer for key, (_ready, answer) in zip(asked, kept, strict=True) if answer is not None}
        elif len(asked) == 1:  # the usual case: no tasks to make
            answers = {asked[0]: await one(*asked[0])}
        else:
            answers = dict(zip(asked, await asyncio.gather(*(one(q, t) for q, t in asked)), strict=True))
        out = []
        for ex, key in zip(exemplars, keys, strict=True):
            if key is None:
                out.append(unknown(ex, f"{ex.metric} is not a histogram bucket series"))
                continue
            answer = answers.get(key)
            if answer is None:
                out.append(unknown(ex, f"not looked up (at most {_MAX_LOOKUPS} series per trace)"))
            elif isinstance(answer, _Passing):
                out.append(unknown(ex, answer))
            else:
                out.append(standing_in(ex, answer))
        return tuple(out)


def _instant(exemplar: Exemplar) -> int:
    """When the exemplar's standing query is evaluated: 2.5 minutes after it, to the whole second (shared)."""
    return (exemplar.timestamp_ns + _CENTRE_NS + _SECOND_NS // 2) // _SECOND_NS * _SECOND_NS


_START_AND_ID = operator.attrgetter("start_ns", "span_id")


def _root_without_exemplar(correlation: Correlation) -> Span | None:
    trace = correlation.trace
    if trace is None or not trace.spans:
        return None
    root = _root_of(trace.spans)
    if any(place.span_id == root.span_id for place in correlation.exemplar_placements):
        return None
    return root


def _root_of(spans: Sequence[Span]) -> Span:
    """`min(spans, key=(has a parent, start, ID))`: the first of the earliest spans without a parent, else of all spans,
    without a tuple and a lambda call per span (bench P3: 20 per correlation; tests/test_p3_rest.py)."""
    return min([sp for sp in spans if sp.parent_span_id is None] or spans, key=_START_AND_ID)


def standing_body(standing: Standing) -> dict[str, Any]:
    """The JSON of one standing, with its sentence."""
    # Each end's text once: the sentence's HH:MM is `_hhmm`'s slice of it (two fewer formattings, a fifth of the cost).
    start, end = rfc3339_ns(standing.window.start_ns), rfc3339_ns(standing.window.end_ns)
    if not standing.known or standing.faster_share is None:
        message = f"unknown: {standing.reason}"
    else:
        share = f"{'at least ' if standing.at_least else '~'}{standing.faster_share:.0%}"
        message = (f"slower than {share} of {standing.series} between {start[11:16]} and "
                   f"{end[11:16]} UTC ({standing.observations:.0f} observations; bucket {standing.bucket})")
    return {"known": standing.known, "series": standing.series, "bucket": standing.bucket,
            "faster_share": None if standing.faster_share is None else round(standing.faster_share, 4),
            "at_least": standing.at_least, "observations": standing.observations,
            "window": {"start": start, "end": end}, "reason": standing.reason, "message": message}


def add_standings(body: dict[str, Any], correlation: Correlation, standings: Sequence[Standing]) -> None:
    """Each exemplar's `standing` in the correlation body, and the trace's own: that of the
    exemplar on its root span (the request's latency), else the root span's on a configured latency
    histogram, else that of its slowest known exemplar."""
    by_id = {s.exemplar_id: s for s in standings}
    written: dict[int, dict[str, Any]] = {}  # id(standing) → its JSON: the trace's is usually an exemplar's (read-only)
    for entry in body.get("exemplars", ()):
        found = by_id.get(entry["id"])
        entry["standing"] = None if found is None else written.setdefault(id(found), standing_body(found))
    roots = {s.span_id for s in correlation.trace.spans if s.parent_span_id is None} if correlation.trace else set()
    on_root = [by_id[ex.id] for ex, place in zip(correlation.exemplars, correlation.exemplar_placements, strict=True)
               if ex.id in by_id and place.span_id in roots and by_id[ex.id].known]
    on_root += [s for s in standings if s.exemplar_id.startswith("root-") and s.known]
    known = sorted((s for s in standings if s.known), key=lambda s: -(s.faster_share or 0.0))
    candidates = on_root or known or list(standings)
    body["standing"] = written.get(id(candidates[0])) or standing_body(candidates[0]) if candidates else {
        "known": False, "message": "unknown: this trace left no exemplar on a latency histogram"}

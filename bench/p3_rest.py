"""P3's parts no other bench prices, in process: the sources' parses, the standing lookup, the client path.

    python bench/p3_rest.py                          # µs per part, process CPU, min of repeats
    python bench/p3_rest.py --calls 300 PART         # for callgrind: PART 300 times in one `functools.reduce`
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \\
        python3.11 bench/p3_rest.py --calls 300 PART   # instructions (setup, capture and warm-up not counted)

Starts `bench/run.py`'s Go backends (no latency) and the service's app in this process, makes a few P3
correlations through HTTP and keeps what each source's `get` answered (status, headers, body) and what the
sources and the standing lookup were asked. Then replays, on those very answers (no I/O):

- `jaeger`, `loki`, `prometheus`: the source's `fetch` (status checks, the parse, the trace check and merge for
  Loki's two lookups, the cap), its `get` answering the recorded answer at once;
- `loki_parse`, `loki_parse_unshared`, `loki_check`: pieces of `loki`: the two answers' parse with the fetch's memo
  and without it, and the trace check of one lookup's lines;
- `floor_parse`: `orjson.loads` of the same four bodies — what `bench/floor.py` does with them (`floor_jaeger`,
  `floor_loki`, `floor_prometheus`: one source's);
- `untraced_lines`, `others_search`: one shared untraced-lines query's and one other-traces search's parse
  (`LokiSource.untraced_answer`, `JaegerSource.service_traces`): under P3 a few per second, shared;
- `standing`: `StandingLookup.lookup` with its query answered and shared, as under P3's load;
- `get`, `get_floor`: one real Loki GET of the 20-line answer through our client (`_http.get`) and through a bare
  aiohttp session as `bench/floor.py` makes it (`session.get(path, params=…)` + `read()`), both with the loop's
  socket work; their difference is what our client path costs beyond the floor's per GET;
- `noop`: an empty coroutine, the harness's own cost per call (subtract it).

Each part is awaited `--calls` times one after another in one run of the loop. It measures the tree it sits
in; to compare another tree, run its copy (at the same time, for callgrind's figure too).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import io
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import orjson
import uvloop
from aiohttp import web

import correlator.api as api
import correlator.sources.jaeger as jaeger_module
import correlator.sources.loki as loki_module
import correlator.sources.prometheus as prometheus_module
from bench import run as bench
from correlator.config import load_settings
from correlator.single_flight import SingleFlight
from correlator.sources import _http
from correlator.sources.jaeger import JaegerSource
from correlator.sources.loki import LokiSource
from correlator.sources.prometheus import PrometheusSource
from correlator.standing_run import StandingLookup

_MODULES = {"jaeger": jaeger_module, "loki": loki_module, "prometheus": prometheus_module}


def _key(path: str, params: Any) -> tuple[str, str | None]:
    """What tells one recorded answer from another within a correlation (cheap: the replay's own cost is not a part's)."""
    return path, params.get("query") if params else None


class Capture:
    """What one P3 correlation's sources were asked and answered, kept by spies on `get` and the fetches."""

    def __init__(self) -> None:
        self.answers: dict[str, dict[Any, Any]] = {name: {} for name in _MODULES}
        self.order: dict[str, list[Any]] = {name: [] for name in _MODULES}
        self.calls: dict[str, tuple[Any, ...]] = {}
        self.app: web.Application | None = None


async def _capture(base: str, count: int) -> Capture:
    settings = load_settings(environ={"CORRELATOR_JAEGER_URL": base, "CORRELATOR_LOKI_URL": base,
                                      "CORRELATOR_PROMETHEUS_URL": base, "CORRELATOR_CACHE_MAX_ENTRIES": "0"})
    seen = Capture()
    real_get = _http.get

    def spy_get(name: str) -> Callable[..., Awaitable[Any]]:
        async def get(client: Any, source: str, path: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
            answer = await real_get(client, source, path, params, *args, **kwargs)
            seen.answers[name][_key(path, params)] = answer
            seen.order[name].append((path, params))
            return answer
        return get

    fetches: dict[str, Any] = {"jaeger": JaegerSource.fetch, "loki": LokiSource.fetch, "prometheus": PrometheusSource.fetch,
               "untraced_lines": LokiSource.untraced_answer, "others_search": JaegerSource.service_traces,
               "standing": StandingLookup.lookup}
    owners = {"jaeger": JaegerSource, "loki": LokiSource, "prometheus": PrometheusSource, "untraced_lines": LokiSource,
              "others_search": JaegerSource, "standing": StandingLookup}
    names = {"jaeger": "fetch", "loki": "fetch", "prometheus": "fetch", "untraced_lines": "untraced_answer",
             "others_search": "service_traces", "standing": "lookup"}

    def spy_fetch(part: str) -> Callable[..., Awaitable[Any]]:
        real = fetches[part]

        async def fetch(self: Any, *args: Any, **kwargs: Any) -> Any:
            seen.calls[part] = (self, args, kwargs)
            return await real(self, *args, **kwargs)
        return fetch

    for name, module in _MODULES.items():
        setattr(module, "get", spy_get(name))  # noqa: B010  # the spies, for the capture only
    for part, owner in owners.items():
        setattr(owner, names[part], spy_fetch(part))
    app = api.create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    port = bench.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            # Random IDs as P3's load asks, seeded, and with a non-zero first digit: an ID with leading zeros is looked up in
            # Loki by its shorter spelling, which the bench's backends do not recognise (the two lookups' answers differ).
            rng = random.Random(3)
            for _ in range(count):
                async with session.get(f"http://127.0.0.1:{port}/correlate/{rng.getrandbits(128) | 1 << 127:032x}") as response:
                    assert response.status == 200, response.status
                    await response.read()
    finally:
        await runner.cleanup()
        for module in _MODULES.values():
            setattr(module, "get", real_get)  # noqa: B010
        for part, owner in owners.items():
            setattr(owner, names[part], fetches[part])
    return seen


def _replaying(answers: dict[Any, Any]) -> Callable[..., Awaitable[Any]]:
    async def get(_client: Any, _source: str, path: str, params: Any = None, *_args: Any, **_kwargs: Any) -> Any:
        return answers[_key(path, params)]
    return get


def parts(seen: Capture, base: str) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Each part as a coroutine function; the sources' `get` replays the recorded answers (not for `get*`)."""
    for name, module in _MODULES.items():
        setattr(module, "get", _replaying(seen.answers[name]))  # noqa: B010

    def replay(part: str) -> Callable[[], Awaitable[Any]]:
        owner, args, kwargs = seen.calls[part]
        method = getattr(owner, {"untraced_lines": "untraced_answer", "others_search": "service_traces",
                                 "standing": "lookup"}.get(part, "fetch"))
        return lambda: method(*args, **kwargs)

    bodies = {name: [bytes(seen.answers[name][_key(path, params)].body) for path, params in seen.order[name][:2 if name == "loki" else 1]]
              for name in ("jaeger", "loki", "prometheus")}

    def loads(*names: str) -> Callable[[], Awaitable[None]]:
        async def floor_parse() -> None:
            for name in names:
                for body in bodies[name]:
                    orjson.loads(body)
        return floor_parse

    async def noop() -> None:
        return None

    loki_source = seen.calls["loki"][0]
    loki_path, loki_params = seen.order["loki"][0]
    state: dict[str, Any] = {}

    async def get() -> Any:
        return await _http.get(loki_source.client, "loki", loki_path, loki_params, None, loki_source.settings.max_response_bytes)

    async def get_floor() -> Any:
        session = state.get("session")
        if session is None:
            session = state["session"] = aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=100))
        async with session.get(loki_path, params=loki_params) as response:
            return await response.read()

    if "standing" in seen.calls:  # its query kept for the whole run, as under P3 (answered within the last 2 s)
        lookup = seen.calls["standing"][0]
        lookup._shared = SingleFlight(1e9)
    # Loki's fetch in pieces: the two answers' parse (with the fetch's memo, and without), the trace check of a lookup's lines.
    loki_owner, loki_args, _kw = seen.calls["loki"]
    loki_bodies = [seen.answers["loki"][_key(path, params)].body for path, params in seen.order["loki"][:2]]
    trace_id = loki_args[0]
    checked_lines, _count = loki_module.parse_streams_body(loki_bodies[0], loki_owner.settings)

    async def loki_parse() -> None:
        memo = loki_module._new_memo()
        for body in loki_bodies:
            loki_module.parse_streams_body(body, loki_owner.settings, memo)

    async def loki_parse_unshared() -> None:
        for body in loki_bodies:
            loki_module.parse_streams_body(body, loki_owner.settings)

    async def loki_check() -> None:
        spellings = trace_id.spellings
        for line in checked_lines:
            loki_module.carries_trace(line, trace_id, loki_owner.settings, spellings)

    found: dict[str, Callable[[], Awaitable[Any]]] = {part: replay(part) for part in ("jaeger", "loki", "prometheus", "untraced_lines", "others_search", "standing")
             if part in seen.calls}
    return {**found, "loki_parse": loki_parse, "loki_parse_unshared": loki_parse_unshared, "loki_check": loki_check,
            "floor_parse": loads("jaeger", "loki", "prometheus"), "floor_jaeger": loads("jaeger"), "floor_loki": loads("loki"),
            "floor_prometheus": loads("prometheus"), "get": get, "get_floor": get_floor, "noop": noop}


def main() -> None:
    port = bench.free_port()
    with contextlib.redirect_stdout(io.StringIO()):
        backends = bench._backends(port, 0, 0.0)
    base = f"http://127.0.0.1:{port}"
    try:
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        seen = loop.run_until_complete(_capture(base, 5))
        calls = parts(seen, base)

        async def repeat(call: Callable[[], Awaitable[Any]], count: int) -> None:
            for _ in range(count):
                await call()

        # The live GETs need the correlator's clients open again (the app closed them): a fresh client per source.
        from correlator.sources._http import make_client
        settings = seen.calls["loki"][0].settings
        client = make_client(settings)
        seen.calls["loki"][0].client = client
        if sys.argv[1:2] == ["--calls"]:
            count, which = int(sys.argv[2]), sys.argv[3]
            call = calls[which]
            loop.run_until_complete(repeat(call, 20))  # caches warm, pools open, as in a running service
            gc.disable()
            functools.reduce(lambda _acc, _n: loop.run_until_complete(repeat(call, count)), range(1), None)
            return
        gc.disable()

        def cpu_min(call: Callable[[], Awaitable[Any]], number: int, repeats: int) -> float:
            best = float("inf")
            loop.run_until_complete(repeat(call, 20))
            for _ in range(repeats):
                start = time.process_time()
                loop.run_until_complete(repeat(call, number))
                best = min(best, (time.process_time() - start) / number)
            return best

        unit = cpu_min(noop_sum, 2000, 5)
        print(f"unit sum(range(1000)): {unit * 1e6:.1f} µs")
        for name, call in calls.items():
            print(f"{name:15} {cpu_min(call, 300, 7) * 1e6:8.1f} µs")
    finally:
        backends.kill()
        backends.wait()


async def noop_sum() -> None:
    sum(range(1000))


if __name__ == "__main__":
    main()

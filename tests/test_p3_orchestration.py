"""The orchestration's cheaper paths (docs/performance-p3.md "Session 9") give what the paths they replaced gave."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from correlator.errors import SourceError
from correlator.sources.loki import _each


async def _call(outcome: str, steps: int, log: list[str], name: str) -> str:
    try:
        for _ in range(steps):
            await asyncio.sleep(0)
    except asyncio.CancelledError:
        log.append(f"{name} cancelled")
        raise
    if outcome == "error":
        raise SourceError("loki", f"{name} failed")
    if outcome == "bug":
        raise ValueError(name)
    return name


def _shape(results: list[Any]) -> list[tuple[str, str]]:
    return [(type(r).__name__, str(r)) for r in results]


@pytest.mark.parametrize(("outcomes", "steps"), list(itertools.product(
    itertools.product(["ok", "error", "bug"], repeat=2), [(0, 0), (0, 3), (3, 0), (2, 2)])))
async def test_each_gives_what_gather_with_exceptions_gave(outcomes: tuple[str, str], steps: tuple[int, int]) -> None:
    log: list[str] = []
    names = ("line filter", "metadata")
    calls = [(outcome, step, log, name) for outcome, step, name in zip(outcomes, steps, names, strict=True)]
    gathered = await asyncio.gather(*(_call(*c) for c in calls), return_exceptions=True)
    each = await _each(_call(*c) for c in calls)
    assert _shape(each) == _shape(gathered) and log == []


async def test_each_cancelled_cancels_the_others_and_raises_as_gather_did() -> None:
    for runner in ("gather", "each"):
        log: list[str] = []
        calls = [_call("ok", 50, log, "line filter"), _call("ok", 50, log, "metadata")]
        waiting = asyncio.ensure_future(asyncio.gather(*calls, return_exceptions=True) if runner == "gather" else _each(calls))
        for _ in range(3):
            await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        for _ in range(3):
            await asyncio.sleep(0)
        assert sorted(log) == ["line filter cancelled", "metadata cancelled"], runner

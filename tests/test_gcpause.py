"""The collector pause around big parses: resumes whatever happens, nests, and really pauses."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from correlator.config import load_settings
from correlator.gcpause import gc_paused, without_gc
from correlator.sources.loki import parse_streams


def test_the_collector_resumes_after_the_burst_even_when_it_raises() -> None:
    assert gc.isenabled()

    @without_gc
    def boom() -> None:
        assert not gc.isenabled()
        raise ValueError("bad body")

    with pytest.raises(ValueError):
        boom()
    assert gc.isenabled()


def test_nested_pauses_resume_once_at_the_outermost() -> None:
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled(), "an inner pause must not resume the outer one's collector"
    assert gc.isenabled()


def test_a_collector_someone_else_disabled_stays_disabled() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_parsing_a_big_loki_answer_runs_no_collection() -> None:
    values = [[str(1_795_572_505_000_000_000 + i), f"msg=step trace_id=4bf92f3577b34da6a3ce929d0e0e4736 n={i}",
               {"structuredMetadata": {"detected_level": "info"}}] for i in range(20_000)]
    body = {"status": "success", "data": {"resultType": "streams", "encodingFlags": ["categorize-labels"],
                                          "result": [{"stream": {"service_name": "api"}, "values": values}]}}
    settings = load_settings(environ={}).loki
    collections: list[Any] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        lines, entries = parse_streams(body, settings)
    finally:
        gc.callbacks.remove(count)
    assert entries == len(lines) == 20_000
    # At most the one collection the allocation count owes once the collector resumes — young, or
    # older when earlier tests left that generation's count at its threshold (without the pause: 9
    # here, each walking every container allocated so far).
    assert len(collections) <= 1, f"{len(collections)} collections during one parse"
    # Equal metadata is shared, not copied per line; the parse still gives each line its own.
    assert lines[0].metadata is lines[-1].metadata and dict(lines[0].metadata) == {"detected_level": "info"}


def test_the_decorator_and_the_block_nest_either_way_and_leave_someone_elses_pause_alone() -> None:
    @without_gc
    def inner() -> bool:
        with gc_paused():
            pass
        return gc.isenabled()

    with gc_paused():
        assert inner() is False
        assert not gc.isenabled(), "the decorated call inside a pause must not resume the collector"
    assert gc.isenabled()
    assert inner() is False and gc.isenabled()
    gc.disable()
    try:
        assert inner() is False
        assert not gc.isenabled(), "a collector someone else disabled stays disabled"
    finally:
        gc.enable()

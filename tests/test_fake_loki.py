"""The fake Loki answers every recorded request exactly as the real Loki 3 did.

This is what licenses using it as Loki in the other tests: same status, same content type,
same streams, values, metadata and encoding flags (stats differ and are opaque to us).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fakes.loki import RECORDED, make_fake_loki_app

RECORDINGS = sorted(p.name for p in RECORDED.glob("*.json") if p.name != "scenario.json")


def canonical(result: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """Streams are not ordered by Loki's contract (clients merge-sort): compare them as a set."""
    return sorted((json.dumps(s["stream"], sort_keys=True), s["values"]) for s in result)


@pytest.mark.parametrize("name", RECORDINGS)
async def test_fake_reproduces_the_recording(aiohttp_client: Any, name: str) -> None:
    recording = json.loads((RECORDED / name).read_text())
    request, expected = recording["request"], recording["response"]
    client = await aiohttp_client(make_fake_loki_app())
    response = await client.get(request["path"], params=request.get("params", {}), headers=request.get("headers", {}))
    assert response.status == expected["status"]
    assert response.content_type.split(";")[0] == expected["content_type"].split(";")[0]
    if isinstance(expected["body"], str):
        assert (await response.text()).strip() == expected["body"].strip()
        return
    body = await response.json()
    assert body["status"] == expected["body"]["status"]
    if not isinstance(expected["body"]["data"], dict):
        assert body["data"] == expected["body"]["data"]
        return
    got, want = body["data"], expected["body"]["data"]
    assert got["resultType"] == want["resultType"]
    assert got.get("encodingFlags") == want.get("encodingFlags")
    assert canonical(got["result"]) == canonical(want["result"])


def test_every_recording_is_covered() -> None:
    """A new recording in tests/fixtures/recorded/loki/ must not slip past the contract test."""
    assert len(RECORDINGS) >= 15


async def test_tenants_see_only_their_own_lines(aiohttp_client: Any) -> None:
    from tests.fakes.loki import Entry

    a = [Entry(1_795_572_505_000_000_000, "a trace_id=4bf92f3577b34da6a3ce929d0e0e4736", {"service_name": "x"})]
    client = await aiohttp_client(make_fake_loki_app(tenants={"a": a, "b": []}))
    params = {"query": '{service_name="x"} |= "4bf9"', "start": "1795572400000000000", "end": "1795572600000000000"}
    assert (await client.get("/loki/api/v1/query_range", params=params)).status == 401
    got_a = await (await client.get("/loki/api/v1/query_range", params=params, headers={"X-Scope-OrgID": "a"})).json()
    got_b = await (await client.get("/loki/api/v1/query_range", params=params, headers={"X-Scope-OrgID": "b"})).json()
    assert len(got_a["data"]["result"]) == 1 and got_b["data"]["result"] == []

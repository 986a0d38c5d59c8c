"""Tenancy: two tenants correlate the same trace ID; each sees only its own Loki lines,
from a cold and from a warm cache."""

from __future__ import annotations

from typing import Any

from correlator.api import create_app
from correlator.config import load_settings
from tests.apiclient import TRACE, Backends
from tests.fakes.loki import Entry, make_fake_loki_app, recorded_entries


async def test_each_tenant_gets_only_its_own_lines(aiohttp_client: Any, aiohttp_server: Any) -> None:
    mine = recorded_entries()
    theirs = [Entry(e.ts, e.line.replace("msg=", "tenant=b msg="), e.labels, e.metadata) for e in mine if "api-gateway" in str(e.labels)]
    loki = await aiohttp_server(make_fake_loki_app(tenants={"team-a": mine, "team-b": theirs}))
    settings = load_settings(environ={"CORRELATOR_SERVER_FORWARD_TENANT": "true",
                                      "CORRELATOR_LOKI_URL": f"http://127.0.0.1:{loki.port}"})
    backends = Backends()
    transports = backends.transports()
    del transports["loki"]  # Loki is the real-shaped fake with two tenants
    client = await aiohttp_client(create_app(settings, transports))
    for round_ in ("cold", "warm"):
        a = await (await client.get(f"/correlate/{TRACE}", headers={"X-Scope-OrgID": "team-a"})).json()
        b = await (await client.get(f"/correlate/{TRACE}", headers={"X-Scope-OrgID": "team-b"})).json()
        assert a["summary"]["log_count"] == 8, round_
        assert b["summary"]["log_count"] == 2 and all("tenant=b" in entry["line"] for entry in b["logs"]), round_
        assert a["cached"] is (round_ == "warm") and b["cached"] is (round_ == "warm")
    # without a tenant a multi-tenant Loki refuses, and the answer says which source and why
    none = await (await client.get(f"/correlate/{TRACE}")).json()
    assert none["sources"]["loki"]["status"] == "error" and "X-Scope-OrgID" in none["sources"]["loki"]["error"]

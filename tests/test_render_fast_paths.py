"""The body's small fast paths (docs/performance-p3.md, session 9) write what the general code writes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.config import load_settings
from correlator.render import _explore_head, grafana_explore_url
from correlator.sources._http import _quote

_SETTINGS = load_settings(environ={"CORRELATOR_GRAFANA_URL": "http://grafana.example:3000/"})


def _general(trace_hex: str, start_ns: int | None, end_ns: int | None) -> str:
    """The link as it was made before the fast path: the tail's JSON, quoted as `urlencode(…, quote_via=quote)`."""
    tail = json.dumps(trace_hex) + "}]"
    if start_ns is not None and end_ns is not None:
        tail += f',"range":{{"from":"{start_ns // 1_000_000 - 60_000}","to":"{end_ns // 1_000_000 + 60_000}"}}'
    return _explore_head(_SETTINGS.grafana.url, _SETTINGS.grafana.jaeger_uid) + _quote(tail + "}}")


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.text("0123456789abcdef", min_size=1, max_size=32), st.text(min_size=1, max_size=40)),
       st.one_of(st.none(), st.integers(-(1 << 64), 1 << 64)), st.one_of(st.none(), st.integers(-(1 << 64), 1 << 64)))
def test_the_grafana_link_is_the_general_one(trace_hex: str, start_ns: int | None, end_ns: int | None) -> None:
    assert grafana_explore_url(_SETTINGS, trace_hex, start_ns, end_ns) == _general(trace_hex, start_ns, end_ns)


def test_a_trace_ids_link_opens_that_trace_in_its_range() -> None:
    url = grafana_explore_url(_SETTINGS, "4bf92f3577b34da6a3ce929d0e0e4736", 1_700_000_000_000_000_000, 1_700_000_001_000_000_000)
    from urllib.parse import parse_qs, urlsplit

    panes = json.loads(parse_qs(urlsplit(url).query)["panes"][0])
    assert panes["trace"]["queries"][0]["query"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert panes["trace"]["range"] == {"from": "1699999940000", "to": "1700000061000"}  # a minute either side
    assert panes["trace"]["datasource"] == _SETTINGS.grafana.jaeger_uid

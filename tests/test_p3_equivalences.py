"""Cuts for bench P3 that must not change an answer: each pinned to what it replaced."""

from __future__ import annotations

from dataclasses import fields, replace

from correlator.analysis.merge import _with_evidence
from correlator.model import Finding, Severity


def test_with_evidence_keeps_every_other_field() -> None:
    finding = Finding("fan_out", Severity.WARNING, "five calls at once", ("a", "b"), {"x": 1}, impact_ns=7)
    # Every field must differ from its default, so a field added to Finding and forgotten here shows.
    for f in fields(Finding):
        assert getattr(finding, f.name) not in (None, (), {}, 0, ""), f"give {f.name} a non-default value in this test"
    assert _with_evidence(finding, {"quotes": []}) == replace(finding, evidence={"quotes": []})
    assert [f.name for f in fields(Finding)] == ["kind", "severity", "message", "span_ids", "evidence", "impact_ns"]


def test_the_grafana_link_is_urlencode_quoted() -> None:
    from urllib.parse import quote, urlencode

    from correlator.config import load_settings
    from correlator.render import grafana_explore_url

    settings = load_settings(environ={"CORRELATOR_GRAFANA_URL": "https://g.example/sub/", "CORRELATOR_GRAFANA_JAEGER_UID": "jä ger&/=?"})
    url = grafana_explore_url(settings, "4bf92f3577b34da6a3ce929d0e0e4736", 1_795_572_505_053_000_000, 1_795_572_506_000_000_000)
    base, _, query = url.partition("?")
    assert base == "https://g.example/sub/explore"
    panes = '{"trace":{"datasource":"j\\u00e4 ger&/=?","queries":[{"refId":"A","datasource":{"type":"jaeger","uid":"j\\u00e4 ger&/=?"},' \
            '"query":"4bf92f3577b34da6a3ce929d0e0e4736"}],"range":{"from":"1795572445053","to":"1795572566000"}}}'
    assert query == urlencode({"schemaVersion": 1, "panes": panes}, quote_via=quote)


def test_a_series_query_is_the_same_whatever_the_label_order_and_asked_again() -> None:
    import json

    from correlator.model import Exemplar
    from correlator.standing import histogram_query

    def reference(metric: str, series: dict[str, str]) -> str:
        matchers = [f"__name__={json.dumps(metric)}"]
        matchers += [f"{k}={json.dumps(v)}" for k, v in sorted(series.items()) if k not in ("__name__", "le")]
        return f"sum by (le) (increase({{{','.join(matchers)}}}[5m]))"

    series = {"__name__": "x_bucket", "le": "0.5", "service": 'a"b\\ü', "route": "/r"}
    for labels in (series, dict(reversed(series.items())), series):
        ex = Exemplar("e", "x_bucket", labels, {}, 0.1, 1, "t", "s")
        assert histogram_query(ex) == reference("x_bucket", labels)
    assert histogram_query(Exemplar("e", "x_count", {"le": "1"}, {}, 0.1, 1, "t", "s")) is None

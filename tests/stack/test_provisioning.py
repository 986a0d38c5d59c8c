"""Grafana provisioning: in sync with the config, and accepted field by field by Grafana.

Allowed keys come from Grafana's provisioning reader and plugin option types, as summarised
with sources in Grafana's own code (paths and versions below):
  datasource level — pkg/services/provisioning/datasources/types.go (upsertDataSourceFromConfigV1);
  Prometheus jsonData — packages/grafana-prometheus/src/types.ts (PromOptions, ExemplarTraceIdDestination);
  Loki derivedFields — public/app/plugins/datasource/loki/types.ts (DerivedFieldConfig);
  Jaeger — public/app/core/components/TraceToLogs|TraceToMetrics settings, NodeGraphSettings, SpanBarSettings.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from correlator.config import load_settings
from correlator.provisioning import DASHBOARDS_FILE, DATASOURCES_FILE, check_provisioning, datasources
from tests.conftest import FIXTURES, REPO, skip_or_fail

DATASOURCE_KEYS = {"name", "type", "uid", "access", "url", "isDefault", "editable", "jsonData", "secureJsonData",
                   "correlations", "basicAuth", "basicAuthUser", "withCredentials", "user", "database", "orgId",
                   "orgName", "version"}
PROMETHEUS_KEYS = {"httpMethod", "timeInterval", "queryTimeout", "prometheusType", "prometheusVersion", "cacheLevel",
                   "exemplarTraceIdDestinations", "customQueryParameters", "disableMetricsLookup", "manageAlerts"}
EXEMPLAR_KEYS = {"name", "datasourceUid", "url", "urlDisplayLabel"}
LOKI_KEYS = {"maxLines", "derivedFields", "timeout", "keepCookies"}
DERIVED_KEYS = {"name", "matcherType", "matcherRegex", "url", "datasourceUid", "urlDisplayLabel", "targetBlank"}
JAEGER_KEYS = {"tracesToLogsV2", "tracesToMetrics", "nodeGraph", "spanBar", "traceIdTimeParams"}
T2L_KEYS = {"datasourceUid", "spanStartTimeShift", "spanEndTimeShift", "tags", "filterByTraceID", "filterBySpanID",
            "customQuery", "query"}
T2M_KEYS = {"datasourceUid", "spanStartTimeShift", "spanEndTimeShift", "tags", "queries"}
UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class UniqueKeyLoader(yaml.SafeLoader):
    """Grafana's yaml.v3 refuses duplicate keys; PyYAML would silently keep the last."""


def _no_duplicates(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys = [loader.construct_object(k, deep=deep) for k, _v in node.value]
    duplicates = {k for k in keys if keys.count(k) > 1}
    assert not duplicates, f"duplicate keys {duplicates} (Grafana refuses the file)"
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def shipped() -> dict[str, Any]:
    return yaml.load((REPO / DATASOURCES_FILE).read_text(), Loader=UniqueKeyLoader)


def grafana_expand(value: str) -> str:
    """Grafana's env expansion with an empty environment: split on $$, expand, join with $."""
    parts = value.split("$$")
    expanded = [re.sub(r"\$(\{[^}]*\}|[A-Za-z0-9_]+|[*#$@!?-])", "", p) for p in parts]
    return "$".join(expanded)


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


def test_shipped_files_equal_the_generated_ones() -> None:
    """`correlator provision` from the default config writes exactly what the repo ships."""
    assert check_provisioning(load_settings(environ={}), REPO) == []


def test_cli_check_reports_drift(tmp_path: Path) -> None:
    shutil.copytree(REPO / "provisioning", tmp_path / "provisioning")
    target = tmp_path / DATASOURCES_FILE
    target.write_text(target.read_text().replace("maxLines: 1000", "maxLines: 10"))
    result = subprocess.run(["python", "-m", "correlator", "provision", "--check", "--out", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **_pyenv()})
    assert result.returncode == 1 and "datasources.yaml: differs" in result.stdout


def _pyenv() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "PYTHONPATH", "VIRTUAL_ENV")}


def test_fields_are_ones_grafana_reads() -> None:
    doc = shipped()
    assert doc["apiVersion"] == 1 and set(doc) <= {"apiVersion", "datasources", "deleteDatasources", "prune"}
    for ds in doc["datasources"]:
        assert set(ds) <= DATASOURCE_KEYS, set(ds) - DATASOURCE_KEYS
        assert UID.match(ds["uid"]) and ds["access"] == "proxy"
        jd = ds["jsonData"]
        if ds["type"] == "prometheus":
            assert set(jd) <= PROMETHEUS_KEYS
            assert all(set(d) <= EXEMPLAR_KEYS for d in jd["exemplarTraceIdDestinations"])
        elif ds["type"] == "loki":
            assert set(jd) <= LOKI_KEYS
            assert all(set(d) <= DERIVED_KEYS for d in jd["derivedFields"])
        elif ds["type"] == "jaeger":
            assert set(jd) <= JAEGER_KEYS
            assert set(jd["tracesToLogsV2"]) <= T2L_KEYS and set(jd["tracesToMetrics"]) <= T2M_KEYS
        else:
            pytest.fail(f"unexpected datasource type {ds['type']}")
    names = [ds["name"] for ds in doc["datasources"]]
    uids = [ds["uid"] for ds in doc["datasources"]]
    assert len(set(names)) == len(names) and len(set(uids)) == len(uids)
    assert sum(1 for ds in doc["datasources"] if ds.get("isDefault")) == 1


def test_every_datasource_uid_reference_exists() -> None:
    doc = shipped()
    uids = {ds["uid"] for ds in doc["datasources"]}

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "datasourceUid"] + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    found = refs(doc)
    assert found and set(found) <= uids
    for dashboard in (REPO / "grafana" / "dashboards").glob("*.json"):
        text = dashboard.read_text()
        assert {m for m in re.findall(r'"uid": "([^"]+)"', text)} - {json.loads(text)["uid"]} <= uids, dashboard.name


def test_macros_survive_grafanas_env_expansion() -> None:
    """Every `$` that starts a macro is `$$` in YAML: after expansion the macro is still there."""
    doc = shipped()
    for value in strings(doc):
        expanded = grafana_expand(value)
        for macro in re.findall(r"\$\$(\{[^}]*\}|__\w+)", value):
            assert "$" + macro in expanded, (value, expanded)
        assert not re.search(r"(?<!\$)\$\{", value), f"bare ${{…}} would be eaten by Grafana: {value}"
    t2l = doc["datasources"][2]["jsonData"]["tracesToLogsV2"]
    assert grafana_expand(t2l["query"]).startswith('{service_name=~".+"} | label_format hit=`{{ contains "${__trace.traceId}" __line__ }}`')


def test_time_shifts_widen_the_span_and_parse_in_grafana() -> None:
    """Start earlier, end later — and in the form Grafana's intervalToMs accepts:
    `^(-?\\d+…)(ms|[Mwdhmsy])` (rangeutil.ts): `-1m` and `1m` parse, `+1m` throws and kills the link."""
    jd = shipped()["datasources"][2]["jsonData"]
    grafana_interval = re.compile(r"^-?\d+(ms|[Mwdhmsy])$")
    for block in (jd["tracesToLogsV2"], jd["tracesToMetrics"]):
        start, end = block["spanStartTimeShift"], block["spanEndTimeShift"]
        assert grafana_interval.match(start) and grafana_interval.match(end), (start, end)
        assert start.startswith("-") and not end.startswith(("-", "+")), (start, end)


def test_label_matcher_is_anchored() -> None:
    label = [d for d in shipped()["datasources"][1]["jsonData"]["derivedFields"] if d.get("matcherType") == "label"]
    assert label and all(d["matcherRegex"] == "^trace_id$" for d in label)


def lines_in_each_format() -> list[tuple[str, str]]:
    """Real lines: the recorded Loki scenario (logfmt, JSON, camelCase JSON, legacy text) and the demo's."""
    body = json.loads((FIXTURES / "recorded/loki/query_range.line_filter.json").read_text())["response"]["body"]
    out = [(v[1], "4bf92f3577b34da6a3ce929d0e0e4736") for s in body["data"]["result"] for v in s["values"]
           if '"otel"' not in v[1]]  # nested otel bodies are found by JSONPath in the correlator, not by this regex
    out.append(("2026-11-25 10:00:00 INFO [billing] invoice lookup trace=7b4c2d9e1f3a5b6c", "7b4c2d9e1f3a5b6c"))
    out.append(('level=info msg="token validated" user=42 trace_id=ee9361a3a14d7ba0984c0ba7d5223fd4 span_id=cc32b53f94c34947',
                "ee9361a3a14d7ba0984c0ba7d5223fd4"))
    out.append(('{"level": "warn", "msg": "slow query", "duration_ms": 80, "trace_id": "ee9361a3a14d7ba0984c0ba7d5223fd4", '
                '"span_id": "cc32b53f94c34947"}', "ee9361a3a14d7ba0984c0ba7d5223fd4"))
    return out


def derived_regex() -> str:
    (field,) = [d for d in shipped()["datasources"][1]["jsonData"]["derivedFields"] if d.get("matcherType") == "regex"]
    return field["matcherRegex"]


def test_derived_field_regex_in_python() -> None:
    pattern = re.compile(derived_regex())
    assert pattern.groups == 1
    for line, expected in lines_in_each_format():
        match = pattern.search(line)
        assert match and match.group(1) == expected, line


def test_derived_field_regex_in_javascript() -> None:
    """Grafana runs it in the browser: `new RegExp(regex)` and `line.match(…)[1]`, in Node here."""
    node = shutil.which("node")
    if node is None:
        skip_or_fail("node is not installed")
    cases = lines_in_each_format()
    script = ("const [re, lines] = JSON.parse(process.argv[1]); const r = new RegExp(re);"
              "console.log(JSON.stringify(lines.map(l => { const m = l.match(r); return m ? m[1] : null; })))")
    out = subprocess.run([node, "-e", script, json.dumps([derived_regex(), [c[0] for c in cases]])],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [c[1] for c in cases]


def test_exemplar_label_matches_the_demo_and_the_correlator() -> None:
    destinations = {d["name"] for d in shipped()["datasources"][0]["jsonData"]["exemplarTraceIdDestinations"]}
    settings = load_settings(environ={})
    assert set(settings.prometheus.trace_id_labels) == destinations
    demo = (REPO / "demo/services/telemetry.py").read_text()
    assert '"trace_id": format(ctx.trace_id, "032x")' in demo  # the demo's exemplar label
    assert "trace_id" in destinations


def test_dashboards() -> None:
    uids = set()
    for path in sorted((REPO / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        panel_links = [link for panel in board["panels"] for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])]
        assert any("Correlate" in link.get("title", "") for link in board["links"] + panel_links), path.name
        assert "$$" not in path.read_text(), "dashboard JSON is not env-expanded: single $"
    assert len(uids) == 3
    red = json.loads((REPO / "grafana/dashboards/red.json").read_text())
    histogram = [p for p in red["panels"] if "_bucket" in p["targets"][0]["expr"]]
    assert len(histogram) == 2 and all(p["targets"][0]["exemplar"] and p["targets"][0]["range"] for p in histogram)


def test_dashboard_provider_points_at_the_mounted_folder() -> None:
    provider = yaml.safe_load((REPO / DASHBOARDS_FILE).read_text())
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounts


def test_generation_follows_the_config() -> None:
    """Change the config, and the links change with it: one source of truth."""
    settings = load_settings(environ={"CORRELATOR_SERVER_PUBLIC_URL": "https://correlator.example:9443",
                                      "CORRELATOR_PROMETHEUS_TRACE_ID_LABELS": "traceID",
                                      "CORRELATOR_GRAFANA_JAEGER_UID": "traces"})
    doc = datasources(settings)
    destinations = doc["datasources"][0]["jsonData"]["exemplarTraceIdDestinations"]
    assert {d["name"] for d in destinations} == {"traceID"}
    assert destinations[1]["url"].startswith("https://correlator.example:9443/correlate/$${__value.raw}")
    assert doc["datasources"][2]["uid"] == "traces"

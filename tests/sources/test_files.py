"""Offline files: every format from real samples, broken and truncated variants, and offline = online.

Trace and exemplar samples are the upstream ones (Jaeger's and Prometheus's own fixtures); Loki's
are the recordings of a real Loki 3 (tests/fixtures/recorded/loki) and Loki's marshaller samples.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from correlator.cli import main
from correlator.config import load_settings
from correlator.ids import parse_trace_id
from correlator.linetime import line_service, line_timestamp_ns
from correlator.offline import correlate_files
from correlator.render import correlation_body
from correlator.sources.files import FileFormatError, InputFile, read_exemplars, read_logs, read_trace, trace_ids_in
from correlator.sources.jaeger import parse_otlp_trace, parse_ui_trace
from correlator.sources.loki import parse_streams
from correlator.sources.prometheus import parse_exemplars
from correlator.timeparams import rfc3339_ns
from tests.conftest import FIXTURES

SETTINGS = load_settings(environ={})
JAEGER = FIXTURES / "upstream" / "jaeger"
RECORDED = FIXTURES / "recorded" / "loki"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def file(name: str, data: bytes | str | Any) -> InputFile:
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, bytes):
        data = orjson.dumps(data)
    return InputFile(name, data)


def upstream(name: str) -> Any:
    return json.loads((JAEGER / name).read_text())


def recorded_body(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())["response"]["body"]


# ------------------------------------------------------------------------------ traces


@pytest.mark.parametrize(("name", "expected"), [
    ("ui_01.ui_model_trace.json", lambda d: parse_ui_trace(d)),  # a trace object, as the UI's "Download JSON"
    ("otlp2jaeger-out.ui_model_response.json", lambda d: parse_ui_trace(d["data"][0])),  # /api/traces answer
    ("otlp2jaeger-in.otlp_tracesdata.json", lambda d: parse_otlp_trace(d, "83a9efd15c1c98a977e0711cc93ee28b")),  # OTLP
    ("api_v3_GetTrace.snapshot.json", lambda d: parse_otlp_trace(d["result"], "00000000000000000000000000000001")),  # v3
    ("log_tags_trace.otlp_tracesdata.json", lambda d: parse_otlp_trace(d, "00000000000000000000000000000002")),
])
def test_each_trace_format_reads_as_the_jaeger_source_reads_it(name: str, expected: Any) -> None:
    data = (JAEGER / name).read_bytes()
    assert read_trace(InputFile(name, data), None) == expected(orjson.loads(data))


def test_a_collector_file_exporter_jsonl_with_several_traces_needs_a_pick() -> None:
    """One TracesData per line (the collector's file exporter); two traces → name them, pick with --trace-id."""
    one, two = upstream("otlp2jaeger-in.otlp_tracesdata.json"), upstream("log_tags_trace.otlp_tracesdata.json")
    jsonl = file("traces.jsonl", orjson.dumps(one) + b"\n" + orjson.dumps(two) + b"\n")
    assert {t for t, _n in trace_ids_in(jsonl)} == {"83a9efd15c1c98a977e0711cc93ee28b", "0" * 31 + "2"}
    with pytest.raises(FileFormatError) as error:
        read_trace(jsonl, None)
    message = str(error.value)
    assert "2 traces" in message and "--trace-id" in message and "83a9efd15c1c98a977e0711cc93ee28b" in message
    picked = read_trace(jsonl, parse_trace_id("2"))
    assert picked == parse_otlp_trace(two, "0" * 31 + "2")
    with pytest.raises(FileFormatError, match=r"no trace 0+abc in this file"):
        read_trace(jsonl, parse_trace_id("abc"))


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize(("data", "where", "expected"), [
    (_truncated((JAEGER / "ui_01.ui_model_trace.json").read_bytes()), "line ", "truncated"),
    (b"", "", "empty"),
    (b"\xff\xfe{", "line 1", "UTF-8"),
    (b'{"foo": 1}', "$", "Jaeger UI JSON"),
    (b'{"error": {"httpCode": 404, "message": "trace not found"}}', "$.error", "error answer"),
    (b'{"data": [{"traceID": "1", "spans": [{"spanID": "2", "startTime": "yesterday", "duration": 1}]}]}',
     "$.data[0].spans[0].startTime", "integer µs"),
    (b'{"data": [{"traceID": "1", "spans": [{"spanID": "2", "startTime": 1, "duration": 1, "processID": "p9"}],'
     b' "processes": {"p1": {"serviceName": "a"}}}]}', "$.data[0].spans[0].processID", "processes"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "' + b"1" * 32 + b'", "spanId": "' + b"2" * 16
     + b'", "startTimeUnixNano": 5, "endTimeUnixNano": "2026-11-25"}]}]}]}',
     "$.resourceSpans[0].scopeSpans[0].spans[0].endTimeUnixNano", "ns since the epoch"),
    (b'{"result": {"resourceSpans": "none"}}', "$.result.resourceSpans", "a list"),
    (b'{"resourceSpans": []}\n{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": 7', "line 2",
     "one JSON document per line"),
])
def test_broken_trace_files_say_where_and_what_was_expected(data: bytes, where: str, expected: str) -> None:
    with pytest.raises(FileFormatError) as error:
        read_trace(InputFile("trace.json", data), None)
    message = str(error.value)
    assert message.startswith("trace.json: ") and where in message and expected in message


# ------------------------------------------------------------------------------ logs


@pytest.mark.parametrize("name", [
    "query_range.line_filter_categorized.json", "query_range.line_filter.json",
    "query_range.structured_metadata.json", "query_range.short_64bit_id.json",
])
def test_loki_answers_read_as_the_loki_source_reads_them(name: str) -> None:
    body = recorded_body(name)
    assert read_logs(file(name, body), None, SETTINGS.loki) == parse_streams(body, SETTINGS.loki)[0]


@pytest.mark.parametrize("name", ["query_range.streams.categorize_labels.json", "query_range.streams.uncategorized.json"])
def test_lokis_own_samples(name: str) -> None:
    data = (FIXTURES / "upstream" / "loki" / name).read_bytes()
    assert read_logs(InputFile(name, data), None, SETTINGS.loki) == parse_streams(orjson.loads(data), SETTINGS.loki)[0]


def test_logcli_jsonl_lines() -> None:
    """`logcli query --output=jsonl`: {"labels", "line", "timestamp"} per line (pkg/logcli/output/jsonl.go)."""
    body = recorded_body("query_range.line_filter.json")
    rows = [{"labels": stream["stream"], "line": line, "timestamp": rfc3339_ns(int(ts))}
            for stream in body["data"]["result"] for ts, line in stream["values"]]
    data = b"".join(orjson.dumps(row) + b"\n" for row in rows)
    lines = read_logs(InputFile("logcli.jsonl", data), None, SETTINGS.loki)
    expected = parse_streams(body, SETTINGS.loki)[0]
    assert [(x.timestamp_ns, x.line, x.service, x.span_id, x.level) for x in lines] == \
           [(x.timestamp_ns, x.line, x.service, x.span_id, x.level) for x in expected]


T0 = "2026-11-25T10:00:00.123456789Z"
T0_NS = 1795600800123456789


@pytest.mark.parametrize(("line", "ns", "service"), [
    (f'{{"timestamp": "{T0}", "level": "info", "service.name": "courses", "trace_id": "{TRACE}"}}', T0_NS, "courses"),
    ('{"@timestamp": "2026-11-25T10:00:00.123Z", "service": {"name": "courses"}}', T0_NS - 456789, "courses"),
    ('{"time": 1795600800123, "level": 30, "msg": "pino"}', T0_NS - 456789, None),
    ('{"timestamp": {"seconds": 1795600800, "nanos": 123456789}, "severity": "INFO"}', T0_NS, None),
    (f'ts={T0} level=info service=auth msg="token validated"', T0_NS, "auth"),
    ("2026-11-25 10:00:00,123 INFO [app] [views.py:42] - hello", T0_NS - 456789, None),
    ("2026-11-25T11:00:00.123+01:00  INFO [courses,4bf92f3577b34da6a3ce929d0e0e4736,00f067aa0ba902b7] 1 --- x", T0_NS - 456789,
     "courses"),
    ('10.0.0.7 - - [25/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5', T0_NS - 123456789, None),
])
def test_times_and_services_read_from_plain_lines(line: str, ns: int, service: str | None) -> None:
    assert (line_timestamp_ns(line), line_service(line)) == (ns, service)


def test_a_plain_log_file_keeps_stack_traces_with_their_entry() -> None:
    text = (f"{T0} ERROR query failed trace_id={TRACE} span_id=b7ad6b7169203331\n"
            "Traceback (most recent call last):\n  File \"db.py\", line 3\n"
            f"{T0.replace('00.123', '01.000')} INFO next\n")
    lines = read_logs(file("app.log", text), "course-service", SETTINGS.loki)
    assert [(x.line.count("\n"), x.service, x.level, x.span_id) for x in lines] == \
           [(2, "course-service", "error", "b7ad6b7169203331"), (0, "course-service", "info", None)]


@pytest.mark.parametrize(("data", "where", "expected"), [
    (b"no time here\n", "line 1", "expected a log entry with a time"),
    (b'{"status": "success", "data": {"resultType": "matrix", "result": []}}', "$.data.resultType", "streams"),
    (b'{"status": "error", "error": "parse error"}', "$.status", "success"),
    (b'{"status": "success", "data": {"resultType": "streams", "result": [{"stream": {}, "values": [["x", "line"]]}]}}',
     "$.data.result[0].values[0]", "ns timestamp"),
    (json.dumps(recorded_body("query_range.line_filter.json"), indent=1).encode()[:500], "line ", "truncated"),
    (b'{"labels": {}, "line": "a", "timestamp": "2026-11-25T10:00:00Z"}\n{"labels": {}, "line": "b", "timestamp": "soon"}\n',
     "line 2: $.timestamp", "RFC 3339"),
])
def test_broken_log_files_say_where_and_what_was_expected(data: bytes, where: str, expected: str) -> None:
    with pytest.raises(FileFormatError) as error:
        read_logs(InputFile("logs.json", data), None, SETTINGS.loki)
    message = str(error.value)
    assert message.startswith("logs.json: ") and where in message and expected in message


# ------------------------------------------------------------------------------ exemplars


@pytest.mark.parametrize("name", ["query_exemplars.docs_example.json", "query_exemplars.inf_value.json"])
def test_prometheus_exemplar_answers(name: str) -> None:
    data = (FIXTURES / "upstream" / "prometheus" / name).read_bytes()
    labels = SETTINGS.prometheus
    assert read_exemplars(InputFile(name, data), labels) == parse_exemplars(orjson.loads(data), labels.trace_id_labels,
                                                                           labels.span_id_labels)[0]


@pytest.mark.parametrize(("data", "where"), [
    (b'{"status": "success", "data": [{"seriesLabels": {}, "exemplars": [{"labels": {}, "value": "1"}]}]}',
     "$.data[0].exemplars[0].timestamp"),
    (b'{"status": "success", "data": {"resultType": "vector"}}', "$.data"),
    (b'{"status": "success", "data": [', "line 1"),
])
def test_broken_exemplar_files(data: bytes, where: str) -> None:
    with pytest.raises(FileFormatError, match="^ex.json: " + where.replace("[", r"\[").replace("$", r"\$")):
        read_exemplars(InputFile("ex.json", data), SETTINGS.prometheus)


# ------------------------------------------------------------------------------ offline = online


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    """Everything but how long each source took (and whether it was a cache hit), and where the trace
    stands in its series: that is asked of Prometheus' query API live, no file holds it."""
    out = dict(body)
    out["sources"] = {name: {k: v for k, v in src.items() if k != "ms"} for name, src in body["sources"].items()}
    out.pop("cached")
    out.pop("standing", None)
    out["exemplars"] = [{k: v for k, v in ex.items() if k != "standing"} for ex in body["exemplars"]]
    return out


async def test_the_offline_correlation_of_the_seed_trace_equals_the_online_one(aiohttp_client: Any) -> None:
    """The same bodies, once from the (mocked) backends through the service, once from files: field by field equal."""
    from correlator.api import create_app
    from tests.apiclient import Backends, otlp_trace

    backends = Backends()
    # A single-trace file cannot say which other requests ran: compare with the service not asking Jaeger either.
    settings = replace(SETTINGS, join=replace(SETTINGS.join, untraced_overlap_check=False))
    client = await aiohttp_client(create_app(settings, backends.transports()))
    online = await (await client.get(f"/correlate/{TRACE}")).json()
    loki_answers = [backends.loki(httpx.Request("GET", "http://loki/loki/api/v1/query_range", params={"query": q}))
                    for q in ('{a="b"} |= "x"', '{a="b"} | trace_id="x"')]
    exemplars = backends.prometheus(httpx.Request("GET", "http://p/api/v1/query_exemplars"))
    outcome = await correlate_files(settings, file("trace.json", otlp_trace()),
                                    [InputFile(f"loki{i}.json", r.content) for i, r in enumerate(loki_answers)],
                                    [InputFile("exemplars.json", exemplars.content)])
    offline = orjson.loads(orjson.dumps(correlation_body(outcome, settings)))
    assert online["summary"]["log_count"] == 8 and online["findings"]
    assert _comparable(offline) == _comparable(online)


# ------------------------------------------------------------------------------ the command


def test_the_command_reads_stdin_and_prints_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    from tests.apiclient import otlp_trace

    logs = tmp_path / "loki.json"
    logs.write_bytes(orjson.dumps(recorded_body("query_range.line_filter_categorized.json")))
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(orjson.dumps(otlp_trace()))))
    code = main(["correlate", "--trace", "-", "--logs", str(logs), "--format", "json"])
    body = json.loads(capsys.readouterr().out)
    assert code == 0 and body["trace_id"] == TRACE and body["summary"]["log_count"] == 6
    assert body["sources"]["prometheus"]["status"] == "skipped" and "--exemplars" in body["sources"]["prometheus"]["error"]


def test_the_command_names_the_broken_file_without_a_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "trace.json"
    broken.write_bytes(_truncated((JAEGER / "otlp2jaeger-out.ui_model_response.json").read_bytes()))
    assert main(["correlate", "--trace", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"correlator: {broken}: line ") and "truncated" in err and "Traceback" not in err
    assert main(["correlate", "--trace", str(tmp_path / "missing.json")]) == 2
    assert "cannot read the file" in capsys.readouterr().err


def test_a_json_log_file_with_a_status_field_is_a_log_file_not_a_loki_answer() -> None:
    one = f'{{"status": 200, "time": "{T0}", "msg": "GET /", "trace_id": "{TRACE}"}}'
    for data in (one, one + "\n" + one.replace("GET /", "GET /a")):
        lines = read_logs(file("access.json", data), "gateway", SETTINGS.loki)
        assert [x.timestamp_ns for x in lines] == [T0_NS] * len(lines) and lines[0].service == "gateway"


def test_service_flag_names_plain_lines(tmp_path: Path) -> None:
    settings = replace(SETTINGS.loki)
    lines = read_logs(file("a.log", f"{T0} hello trace_id={TRACE}\n"), "billing", settings)
    assert lines[0].service == "billing" and lines[0].labels == {"service_name": "billing"}

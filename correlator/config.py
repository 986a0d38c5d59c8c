"""Settings: one tree of frozen dataclasses, loaded from YAML plus `CORRELATOR_*` env overrides.

Every leaf is reachable from the environment by its dotted path, upper-cased, with `_`
for `.`: `loki.max_lines` ← `CORRELATOR_LOKI_MAX_LINES`. The four the README promises
(`CORRELATOR_JAEGER_URL`, `CORRELATOR_LOKI_URL`, `CORRELATOR_PROMETHEUS_URL`,
`CORRELATOR_DEADLINE_SECONDS`) are just leaves of that rule. Unknown keys are errors (a
typo in a config file must not silently fall back to a default), and every error names
the dotted key and the bad value.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from correlator.errors import ConfigError

__all__ = [
    "AnalysisSettings",
    "CacheSettings",
    "GrafanaSettings",
    "InvestigateSettings",
    "JaegerSettings",
    "JoinSettings",
    "LokiSettings",
    "PrometheusSettings",
    "ServerSettings",
    "Settings",
    "Timeouts",
    "WebSettings",
    "load_settings",
]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ROOT_HISTOGRAM = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*_bucket\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\}')


def _check(ok: bool, key: str, value: object, reason: str) -> None:
    if not ok:
        raise ConfigError(key, value, reason)


def _check_url(key: str, value: str) -> None:
    parts = urlsplit(value)
    _check(parts.scheme in ("http", "https") and bool(parts.netloc), key, value,
           "must be an absolute http(s) URL such as http://localhost:3100")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """httpx timeouts in seconds; httpx measures inactivity, so each source also has a deadline."""

    connect: float = 2.0
    read: float = 5.0
    pool: float = 2.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "pool"):
            value = getattr(self, name)
            _check(value > 0, name, value, "must be > 0 seconds")


@dataclass(frozen=True, slots=True)
class _SourceCommon:
    url: str = ""
    timeout: Timeouts = field(default_factory=Timeouts)
    deadline_seconds: float | None = None  # per-source; None → the request's deadline
    headers: dict[str, str] = field(default_factory=dict)
    bearer_token: str | None = None
    basic_auth_user: str | None = None
    basic_auth_password: str | None = None
    # Connections per backend; beyond it requests wait (up to timeout.pool). It caps what one
    # worker asks of a backend at once: at 20 ms per Loki query, 20 connections capped a worker
    # at 500 correlations/s (two Loki queries each) in bench P3.
    max_connections: int = 100
    # Bulkhead: backend queries this worker has in flight at most (a Loki lookup is two); beyond
    # it correlations wait in a queue of `max_queued` for at most server.admission_wait_seconds,
    # then get 503 + Retry-After. Sized from bench P3: its 100 concurrent correlations on one
    # worker fit without queueing (each at most 5 Jaeger queries at once — the untraced lookup's
    # search per service —, 3 Loki, 1 Prometheus). With less, P3 got 503s.
    max_in_flight: int = 128
    max_queued: int = 16  # a queue longer than the slots freed within the wait only delays the 503 (bench flood)
    max_response_bytes: int = 64 * 1024 * 1024
    retry_attempts: int = 3  # total tries for a GET that fails to connect or answers 429/502/503/504
    retry_base_seconds: float = 0.05
    breaker_failures: int = 5  # consecutive failures that open the circuit breaker (0 = no breaker)
    breaker_reset_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class JaegerSettings(_SourceCommon):
    url: str = "http://localhost:16686"
    max_in_flight: int = 512
    ui_url: str | None = None  # where users' browsers reach Jaeger; defaults to `url`
    max_spans: int = 100_000
    lookback_seconds: float = 2 * 24 * 3600  # window when no hint is given (Jaeger UI default)
    forward_tenant: bool = False  # also send the caller's X-Scope-OrgID here (multi-tenant proxies)


@dataclass(frozen=True, slots=True)
class LokiSettings(_SourceCommon):
    url: str = "http://localhost:3100"
    tenant: str | None = None  # X-Scope-OrgID
    max_lines: int = 1000
    margin_seconds: float = 60.0  # logs are written a little before/after their span
    service_label: str = "service_name"
    max_in_flight: int = 384  # three queries per correlation (line filter, structured metadata, untraced lines)
    # "services": {service_label=~"svc1|svc2"} from the trace; "static": `static_selector`
    selector_strategy: str = "services"
    static_selector: str = '{service_name=~".+"}'
    trace_id_fields: tuple[str, ...] = ("trace_id", "traceID", "traceId", "trace")
    span_id_fields: tuple[str, ...] = ("span_id", "spanID", "spanId", "span")
    trace_id_jsonpaths: tuple[str, ...] = ("$.otel.trace_id", "$.trace.id")
    span_id_jsonpaths: tuple[str, ...] = ("$.otel.span_id", "$.span.id")
    # `log.level`: ECS; `levelname`: Python's logging records as JSON formatters write them.
    level_fields: tuple[str, ...] = ("level", "severity_text", "detected_level", "severity", "log.level", "levelname")


@dataclass(frozen=True, slots=True)
class PrometheusSettings(_SourceCommon):
    url: str = "http://localhost:9090"
    exemplar_selector: str = '{__name__=~".+"}'
    # "recent slow requests" (`correlator slow`, the home page): exemplars of every histogram bucket series
    slow_requests_selector: str = '{__name__=~".+_bucket"}'
    trace_id_labels: tuple[str, ...] = ("trace_id", "traceID", "trace.id")
    span_id_labels: tuple[str, ...] = ("span_id", "spanID", "span.id")
    max_exemplars: int = 2000
    margin_seconds: float = 60.0  # an exemplar is stamped when the observation is made
    forward_tenant: bool = False  # also send the caller's X-Scope-OrgID here (Cortex/Mimir/Thanos)
    # Where a trace's root span stands when none of its exemplars sits on it: latency histogram
    # series to try, in order; $service and $operation become the root span's (escaped). The unit
    # (seconds or milliseconds) is read from the metric name. Default: Jaeger's span metrics. (Set it in
    # YAML: a CORRELATOR_PROMETHEUS_ROOT_HISTOGRAMS value is split at commas, so one label each there.)
    root_histograms: tuple[str, ...] = (
        'traces_span_metrics_duration_milliseconds_bucket{service_name="$service",span_name="$operation",'
        'span_kind="SPAN_KIND_SERVER"}',)


@dataclass(frozen=True, slots=True)
class JoinSettings:
    clock_skew_ms: float = 50.0
    # Lines of the trace's services, in its window, that carry no trace ID: attached by service and
    # time with a confidence (`match: inferred`). One more Loki query per correlation, capped.
    untraced: bool = True
    untraced_max_lines: int = 500
    # Ask Jaeger which other traces of each service overlap (a search per service, at most
    # `untraced_overlap_max_services`): needed for `high`; without it attachments are at most `medium`.
    untraced_overlap_check: bool = True
    untraced_overlap_max_services: int = 5
    # Correlations share these lookups for this long (untraced_share.py; 0: each asks on its own).
    untraced_share_seconds: float = 2.0
    # With a time hint, the answer waits for them at most this share of the main lookups' time longer
    # (then `summary.untraced` says what was late).
    untraced_wait_ratio: float = 0.05


@dataclass(frozen=True, slots=True)
class AnalysisSettings:
    bottleneck_share: float = 0.30
    long_span_factor: float = 3.0  # × the median of the same operation in this trace
    long_span_absolute_ms: float = 1000.0
    n_plus_one_min_count: int = 5
    n_plus_one_sequential_share: float = 0.7
    gap_min_ms: float = 10.0
    gap_min_share: float = 0.10
    fan_out_min_children: int = 2


@dataclass(frozen=True, slots=True)
class CacheSettings:
    max_entries: int = 1024
    ttl_seconds: float = 600.0
    # A trace younger than this may still be receiving spans: don't cache it.
    settle_seconds: float = 60.0
    # Big answers (rendered by the worker process, server.offload_bytes) kept besides: each holds its
    # JSON and text (~45 MB at 100k spans), so few of them (bench P5).
    max_big_entries: int = 1


@dataclass(frozen=True, slots=True)
class InvestigateSettings:
    max_traces: int = 50  # the largest `limit` a caller may ask for
    concurrency: int = 20  # trace fetches in flight at once, per investigation (the default limit: one round)
    deadline_seconds: float = 20.0  # one deadline for the whole investigation
    lookback_seconds: float = 3600.0  # window when no start/end is given


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1  # processes sharing the port (SO_REUSEPORT): one event loop is one core
    public_url: str = "http://localhost:8080"  # how browsers reach this service (links)
    auth_token: str | None = None  # bearer token for every route but /healthz and /readyz
    auth_token_file: str | None = None  # or read from a file (a mounted secret); wins over auth_token
    forward_tenant: bool = False  # pass the caller's X-Scope-OrgID to Loki (+ jaeger/prometheus.forward_tenant)
    admission_wait_seconds: float = 0.02  # longest wait for a backend slot before 503 (see <source>.max_in_flight)
    retry_after_seconds: int = 1  # the Retry-After sent with an overload 503
    # Jaeger answers this big or bigger are parsed, analysed and rendered in a worker process, off
    # the event loop (0: never). ~256 KiB ≈ 800 spans ≈ 13 ms of loop CPU inline (re-measured with the
    # native decode, docs/performance-p8.md; in the worker: ~5 ms of loop CPU and one process hop).
    offload_bytes: int = 256 * 1024
    access_log: bool = True  # one JSON line per request (method, route template, status, ms, own trace ID)


@dataclass(frozen=True, slots=True)
class GrafanaSettings:
    url: str = "http://localhost:3000"
    prometheus_uid: str = "prometheus"
    loki_uid: str = "loki"
    jaeger_uid: str = "jaeger"


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The HTML page (docs/page.md)."""

    # Home page "recent slow requests": exemplars of prometheus.slow_requests_selector over this lookback.
    home_lookback_seconds: float = 3600.0
    home_limit: int = 20
    grafana_links: bool = True  # "open in Grafana Explore" links (grafana.url); Jaeger's need jaeger.ui_url
    # Rows shown expanded on a big trace; deeper subtrees start collapsed so a 10k-span page stays responsive.
    visible_rows: int = 500


@dataclass(frozen=True, slots=True)
class Settings:
    deadline_seconds: float = 10.0
    # When Jaeger doesn't know the ID and no hint was given, Loki and Prometheus are searched
    # over this recent past for orphan lines/exemplars (a trace may have been sampled out).
    orphan_lookback_seconds: float = 3600.0
    jaeger: JaegerSettings = field(default_factory=JaegerSettings)
    loki: LokiSettings = field(default_factory=LokiSettings)
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    join: JoinSettings = field(default_factory=JoinSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    investigate: InvestigateSettings = field(default_factory=InvestigateSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    grafana: GrafanaSettings = field(default_factory=GrafanaSettings)
    web: WebSettings = field(default_factory=WebSettings)

    def source_deadline(self, source: _SourceCommon) -> float:
        return min(source.deadline_seconds or self.deadline_seconds, self.deadline_seconds)


# ---------------------------------------------------------------------------- loading


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """YAML file (optional) → env overrides → typed, validated `Settings`."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("CORRELATOR_CONFIG") or None
    raw: dict[str, Any] = {}
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("--config", str(path), f"cannot be read: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError("--config", str(path), f"is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        _check(isinstance(loaded, dict), "(top level)", type(loaded).__name__, "must be a mapping")
        raw = loaded
    _apply_env(Settings, raw, environ, prefix="CORRELATOR", path="")
    settings = _build(Settings, raw, "")
    settings = _read_token_file(settings)
    _validate(settings)
    return settings


def _read_token_file(settings: Settings) -> Settings:
    path = settings.server.auth_token_file
    if not path:
        return settings
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError("server.auth_token_file", path, f"cannot be read: {exc.strerror}") from None
    _check(len(token) >= 16, "server.auth_token_file", path, "holds a token shorter than 16 characters")
    return dataclasses.replace(settings, server=dataclasses.replace(settings.server, auth_token=token))


def _leaves(cls: type, path: str) -> typing.Iterator[tuple[str, str, Any]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{path}{f.name}"
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from _leaves(hint, key + ".")  # type: ignore[arg-type]
        else:
            yield key, f.name, hint


def _apply_env(cls: type, raw: dict[str, Any], environ: Mapping[str, str], prefix: str, path: str) -> None:
    for key, _name, _hint in _leaves(cls, path):
        var = prefix + "_" + key.replace(".", "_").upper()
        if var in environ:
            node = raw
            *parents, leaf = key.split(".")
            for part in parents:
                child = node.setdefault(part, {})
                _check(isinstance(child, dict), part, child, "must be a mapping")
                node = child
            node[leaf] = _EnvValue(var, environ[var])


@dataclass(frozen=True, slots=True)
class _EnvValue:
    var: str
    text: str


def _build(cls: type, raw: Any, path: str) -> Any:
    _check(isinstance(raw, dict), path or "(top level)", raw, "must be a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise ConfigError(f"{path}{key}", raw[key], f"unknown key (known: {', '.join(sorted(names))})")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        hint = hints[f.name]
        key = f"{path}{f.name}"
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(hint, raw[f.name], key + ".")  # type: ignore[arg-type]
        else:
            kwargs[f.name] = _convert(hint, raw[f.name], key)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        # Nested __post_init__ checks know only their own field name: add the path.
        raise ConfigError(f"{path}{exc.key}", exc.value, str(exc).split(": ", 1)[-1]) from None


def _convert(hint: Any, value: Any, key: str) -> Any:
    env = value if isinstance(value, _EnvValue) else None
    shown = f"{env.text} (from {env.var})" if env else value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if (env is not None and env.text == "") or value is None:
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, key)
    if hint is bool:
        text = env.text if env else value
        if isinstance(text, bool):
            return text
        if isinstance(text, str) and text.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(text, str) and text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(key, shown, "must be true or false")
    if hint in (int, float):
        text = env.text if env else value
        if isinstance(text, bool):
            raise ConfigError(key, shown, f"must be a number, not {text}")
        try:
            number = hint(text)
        except (TypeError, ValueError):
            raise ConfigError(key, shown, "must be a number" if hint is float else "must be a whole number") from None
        if hint is float and number != number:  # NaN
            raise ConfigError(key, shown, "must be a number")
        return number
    if hint is str:
        text = env.text if env else value
        _check(isinstance(text, str), key, shown, "must be a string")
        return text
    if origin is tuple:
        items = [s.strip() for s in env.text.split(",") if s.strip()] if env else value
        _check(isinstance(items, list) and all(isinstance(i, str) for i in items), key, shown,
               "must be a list of strings (env: comma-separated)")
        return tuple(items)
    if origin is dict:
        if env:
            try:
                items = dict(pair.split("=", 1) for pair in env.text.split(",") if pair.strip())
            except ValueError:
                raise ConfigError(key, shown, "must be k=v pairs separated by commas") from None
        else:
            items = value
        _check(isinstance(items, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in items.items()),
               key, shown, "must be a mapping of strings to strings")
        return {k.strip(): v.strip() for k, v in items.items()}
    raise ConfigError(key, shown, f"unsupported type {hint}")  # pragma: no cover - schema bug


def _validate(s: Settings) -> None:
    _check(0 < s.deadline_seconds <= 300, "deadline_seconds", s.deadline_seconds, "must be in (0, 300] seconds")
    _check(0 < s.orphan_lookback_seconds <= 30 * 86400, "orphan_lookback_seconds", s.orphan_lookback_seconds,
           "must be in (0, 30 days]")
    for name in ("jaeger", "loki", "prometheus"):
        src = getattr(s, name)
        _check_url(f"{name}.url", src.url)
        if src.deadline_seconds is not None:
            _check(src.deadline_seconds > 0, f"{name}.deadline_seconds", src.deadline_seconds, "must be > 0")
        _check(src.max_connections >= 1, f"{name}.max_connections", src.max_connections, "must be ≥ 1")
        _check(1 <= src.retry_attempts <= 10, f"{name}.retry_attempts", src.retry_attempts, "must be in [1, 10]")
        _check(src.retry_base_seconds >= 0, f"{name}.retry_base_seconds", src.retry_base_seconds, "must be ≥ 0")
        _check(src.breaker_failures >= 0, f"{name}.breaker_failures", src.breaker_failures, "must be ≥ 0")
        _check(src.breaker_reset_seconds > 0, f"{name}.breaker_reset_seconds", src.breaker_reset_seconds, "must be > 0")
        _check(src.max_in_flight >= 1, f"{name}.max_in_flight", src.max_in_flight, "must be ≥ 1")
        _check(src.max_queued >= 0, f"{name}.max_queued", src.max_queued, "must be ≥ 0")
        _check(src.max_response_bytes >= 1024, f"{name}.max_response_bytes", src.max_response_bytes, "must be ≥ 1024")
        _check((src.basic_auth_user is None) == (src.basic_auth_password is None), f"{name}.basic_auth_user",
               src.basic_auth_user, "basic_auth_user and basic_auth_password go together")
        _check(not (src.bearer_token and src.basic_auth_user), f"{name}.bearer_token", "***",
               "use either bearer_token or basic auth, not both")
    if s.jaeger.ui_url:
        _check_url("jaeger.ui_url", s.jaeger.ui_url)
    _check(s.jaeger.max_spans >= 1, "jaeger.max_spans", s.jaeger.max_spans, "must be ≥ 1")
    _check(s.jaeger.lookback_seconds > 0, "jaeger.lookback_seconds", s.jaeger.lookback_seconds, "must be > 0")
    # Loki refuses limit=0 and anything above max_entries_limit_per_query (default 5000).
    _check(1 <= s.loki.max_lines <= 5000, "loki.max_lines", s.loki.max_lines,
           "must be in [1, 5000] (Loki's default max_entries_limit_per_query)")
    _check(s.loki.margin_seconds >= 0, "loki.margin_seconds", s.loki.margin_seconds, "must be ≥ 0")
    _check(bool(_LABEL_NAME.fullmatch(s.loki.service_label)), "loki.service_label", s.loki.service_label,
           "must be a Loki label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    _check(s.loki.selector_strategy in ("services", "static"), "loki.selector_strategy",
           s.loki.selector_strategy, "must be 'services' or 'static'")
    _check(s.loki.static_selector.startswith("{") and s.loki.static_selector.endswith("}"),
           "loki.static_selector", s.loki.static_selector, "must be a LogQL stream selector {…}")
    _check(bool(s.loki.trace_id_fields), "loki.trace_id_fields", s.loki.trace_id_fields, "must not be empty")
    for expr in s.loki.trace_id_jsonpaths + s.loki.span_id_jsonpaths:
        try:
            from jsonpath_ng.parser import parse as jsonpath_parse

            jsonpath_parse(expr)
        except Exception as exc:  # jsonpath-ng raises several unrelated types
            raise ConfigError("loki.trace_id_jsonpaths/span_id_jsonpaths", expr, f"is not a JSONPath: {exc}") from None
    _check(1 <= s.prometheus.max_exemplars <= 1_000_000, "prometheus.max_exemplars", s.prometheus.max_exemplars,
           "must be in [1, 1000000]")
    _check(bool(s.prometheus.slow_requests_selector.strip()), "prometheus.slow_requests_selector",
           s.prometheus.slow_requests_selector, "must be a PromQL selector")
    _check(bool(s.prometheus.exemplar_selector.strip()), "prometheus.exemplar_selector",
           s.prometheus.exemplar_selector, "must be a PromQL selector")
    for series in s.prometheus.root_histograms:
        _check(_ROOT_HISTOGRAM.fullmatch(series) is not None, "prometheus.root_histograms", series,
               'each must be a histogram bucket series: name_bucket{label="value",…} ($service, $operation allowed)')
    _check(bool(s.prometheus.trace_id_labels), "prometheus.trace_id_labels", s.prometheus.trace_id_labels,
           "must not be empty")
    _check(s.join.clock_skew_ms >= 0, "join.clock_skew_ms", s.join.clock_skew_ms, "must be ≥ 0")
    _check(1 <= s.join.untraced_max_lines <= 5000, "join.untraced_max_lines", s.join.untraced_max_lines, "must be in [1, 5000]")
    _check(0 <= s.join.untraced_share_seconds <= 60, "join.untraced_share_seconds", s.join.untraced_share_seconds,
           "must be in [0, 60]")
    _check(0 <= s.join.untraced_wait_ratio <= 10, "join.untraced_wait_ratio", s.join.untraced_wait_ratio, "must be in [0, 10]")
    _check(0 <= s.join.untraced_overlap_max_services <= 50, "join.untraced_overlap_max_services",
           s.join.untraced_overlap_max_services, "must be in [0, 50]")
    a = s.analysis
    _check(0 < a.bottleneck_share <= 1, "analysis.bottleneck_share", a.bottleneck_share, "must be in (0, 1]")
    _check(a.n_plus_one_min_count >= 2, "analysis.n_plus_one_min_count", a.n_plus_one_min_count, "must be ≥ 2")
    _check(0 <= a.n_plus_one_sequential_share <= 1, "analysis.n_plus_one_sequential_share",
           a.n_plus_one_sequential_share, "must be in [0, 1]")
    _check(s.cache.max_entries >= 0, "cache.max_entries", s.cache.max_entries, "must be ≥ 0 (0 disables the cache)")
    _check(s.cache.max_big_entries >= 0, "cache.max_big_entries", s.cache.max_big_entries, "must be ≥ 0")
    _check(s.cache.ttl_seconds >= 0, "cache.ttl_seconds", s.cache.ttl_seconds, "must be ≥ 0")
    inv = s.investigate
    _check(1 <= inv.max_traces <= 500, "investigate.max_traces", inv.max_traces, "must be in [1, 500]")
    _check(1 <= inv.concurrency <= 100, "investigate.concurrency", inv.concurrency, "must be in [1, 100]")
    _check(0 < inv.deadline_seconds <= 300, "investigate.deadline_seconds", inv.deadline_seconds,
           "must be in (0, 300] seconds")
    _check(0 < inv.lookback_seconds <= 31 * 86400, "investigate.lookback_seconds", inv.lookback_seconds,
           "must be in (0, 31 days]")
    if s.server.auth_token is not None:
        _check(len(s.server.auth_token) >= 16, "server.auth_token", "***", "must be at least 16 characters")
    _check(0 <= s.server.admission_wait_seconds <= 10, "server.admission_wait_seconds", s.server.admission_wait_seconds,
           "must be in [0, 10] seconds")
    _check(1 <= s.server.retry_after_seconds <= 3600, "server.retry_after_seconds", s.server.retry_after_seconds,
           "must be in [1, 3600]")
    _check(s.server.offload_bytes >= 0, "server.offload_bytes", s.server.offload_bytes, "must be ≥ 0 (0: never offload)")
    _check(1 <= s.server.workers <= 64, "server.workers", s.server.workers, "must be in [1, 64]")
    _check(0 < s.server.port < 65536, "server.port", s.server.port, "must be a TCP port (1-65535)")
    _check_url("server.public_url", s.server.public_url)
    _check_url("grafana.url", s.grafana.url)
    _check(s.web.home_lookback_seconds > 0, "web.home_lookback_seconds", s.web.home_lookback_seconds, "must be > 0")
    _check(1 <= s.web.home_limit <= 500, "web.home_limit", s.web.home_limit, "must be in [1, 500]")
    _check(s.web.visible_rows >= 1, "web.visible_rows", s.web.visible_rows, "must be ≥ 1")

"""Configuration: env alone is enough, a file and env combine, and every error names key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from correlator.config import load_settings
from correlator.errors import ConfigError


class TestEnvOnly:
    def test_the_four_documented_variables_work_without_a_file(self) -> None:
        s = load_settings(environ={
            "CORRELATOR_JAEGER_URL": "http://jaeger:16686", "CORRELATOR_LOKI_URL": "http://loki:3100",
            "CORRELATOR_PROMETHEUS_URL": "http://prom:9090", "CORRELATOR_DEADLINE_SECONDS": "2.5",
        })
        assert (s.jaeger.url, s.loki.url, s.prometheus.url, s.deadline_seconds) == (
            "http://jaeger:16686", "http://loki:3100", "http://prom:9090", 2.5)

    def test_every_leaf_has_an_env_name(self) -> None:
        """Nested keys, lists and mappings are reachable from the environment too."""
        s = load_settings(environ={
            "CORRELATOR_LOKI_TENANT": "team-a", "CORRELATOR_LOKI_TIMEOUT_READ": "7",
            "CORRELATOR_PROMETHEUS_TRACE_ID_LABELS": "traceID, trace_id",
            "CORRELATOR_LOKI_HEADERS": "X-A=1,X-B=2", "CORRELATOR_SERVER_FORWARD_TENANT": "yes",
        })
        assert s.loki.tenant == "team-a" and s.loki.timeout.read == 7.0
        assert s.prometheus.trace_id_labels == ("traceID", "trace_id")
        assert s.loki.headers == {"X-A": "1", "X-B": "2"}
        assert s.server.forward_tenant is True


class TestFile:
    def test_file_then_env_override(self, tmp_path: Path) -> None:
        cfg = tmp_path / "c.yaml"
        cfg.write_text("deadline_seconds: 4\nloki:\n  url: http://file-loki:3100\n  max_lines: 200\n")
        s = load_settings(cfg, environ={"CORRELATOR_LOKI_URL": "http://env-loki:3100"})
        assert s.deadline_seconds == 4 and s.loki.max_lines == 200 and s.loki.url == "http://env-loki:3100"

    def test_config_path_from_env(self, tmp_path: Path) -> None:
        cfg = tmp_path / "c.yaml"
        cfg.write_text("jaeger: {url: 'http://j:16686'}\n")
        assert load_settings(environ={"CORRELATOR_CONFIG": str(cfg)}).jaeger.url == "http://j:16686"


class TestErrors:
    @pytest.mark.parametrize(("environ", "key", "shown"), [
        ({"CORRELATOR_DEADLINE_SECONDS": "soon"}, "deadline_seconds", "soon"),
        ({"CORRELATOR_DEADLINE_SECONDS": "0"}, "deadline_seconds", "0"),
        ({"CORRELATOR_LOKI_URL": "loki:3100"}, "loki.url", "loki:3100"),
        ({"CORRELATOR_JAEGER_TIMEOUT_CONNECT": "-1"}, "jaeger.timeout.connect", "-1"),
        ({"CORRELATOR_LOKI_MAX_LINES": "6000"}, "loki.max_lines", "6000"),
        ({"CORRELATOR_LOKI_SERVICE_LABEL": "service.name"}, "loki.service_label", "service.name"),
        ({"CORRELATOR_SERVER_FORWARD_TENANT": "maybe"}, "server.forward_tenant", "maybe"),
        ({"CORRELATOR_LOKI_TRACE_ID_JSONPATHS": "$.[["}, "jsonpaths", "$.[["),
    ])
    def test_error_names_key_and_value(self, environ: dict[str, str], key: str, shown: str) -> None:
        with pytest.raises(ConfigError) as info:
            load_settings(environ=environ)
        assert key in str(info.value) and shown in str(info.value)

    def test_unknown_key_is_refused_with_the_known_ones(self, tmp_path: Path) -> None:
        """A typo must not silently fall back to a default."""
        cfg = tmp_path / "c.yaml"
        cfg.write_text("loki:\n  max_line: 10\n")
        with pytest.raises(ConfigError, match=r"loki\.max_line.*unknown key.*max_lines"):
            load_settings(cfg, environ={})

    def test_unreadable_and_invalid_files(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="cannot be read"):
            load_settings(tmp_path / "missing.yaml", environ={})
        bad = tmp_path / "bad.yaml"
        bad.write_text("loki: [unclosed\n")
        with pytest.raises(ConfigError, match="not valid YAML"):
            load_settings(bad, environ={})


class TestSecrets:
    def test_token_from_a_file_and_never_printed(self, tmp_path: Path) -> None:
        secret = tmp_path / "token"
        secret.write_text("a-long-enough-secret-token\n")
        s = load_settings(environ={"CORRELATOR_SERVER_AUTH_TOKEN_FILE": str(secret)})
        assert s.server.auth_token == "a-long-enough-secret-token"
        with pytest.raises(ConfigError) as info:
            load_settings(environ={"CORRELATOR_SERVER_AUTH_TOKEN": "short-secret"})
        assert "short-secret" not in str(info.value)

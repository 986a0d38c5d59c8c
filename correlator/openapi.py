"""The OpenAPI 3.1 description served at /openapi.json (schemathesis and clients read it)."""

from __future__ import annotations

from typing import Any

from correlator import __version__

__all__ = ["OPENAPI"]

_PROBLEM = {"description": "RFC 9457 problem", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
_TIME = {"type": "string", "description": "RFC 3339, or Unix time in s/ms/µs/ns (read by magnitude)"}
_WINDOW_PARAMS = [
    {"name": "start", "in": "query", "required": False, "schema": _TIME},
    {"name": "end", "in": "query", "required": False, "schema": _TIME},
]
_CORRELATION = {"description": "The joined correlation (sources may be partial)",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Correlation"}},
                            "text/plain": {"schema": {"type": "string"}},
                            "text/html": {"schema": {"type": "string"}}}}  # the page (docs/page.md)

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "correlator", "version": __version__,
             "description": "Given a trace ID: the Jaeger trace, its Loki log lines and its Prometheus exemplars, joined and analysed."},
    "paths": {
        "/correlate/{trace_id}": {"get": {
            "summary": "Correlate one trace across traces, logs and metrics",
            "parameters": [
                {"name": "trace_id", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{1,32}$"},
                 "description": "1-32 hex characters; left-padded to 32"},
                *_WINDOW_PARAMS,
                {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["json", "text", "html"]},
                 "description": "default: HTML when Accept prefers text/html (browsers), else JSON"},
            ],
            "responses": {"200": _CORRELATION, "400": _PROBLEM, "401": _PROBLEM,
                          "404": {**_PROBLEM, "description": "every source answered and none knows the ID"},
                          "503": {**_PROBLEM, "description": "overloaded (a backend's bulkhead is full) or shutting down; see Retry-After"}},
        }},
        "/correlate/from-log": {"post": {
            "summary": "Extract the trace ID from a raw log line (text, logfmt or JSON), then correlate",
            "parameters": _WINDOW_PARAMS,
            "requestBody": {"required": True, "content": {
                "text/plain": {"schema": {"type": "string", "maxLength": 65536}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {"line": {"type": "string"}}}},
                "application/json": {"schema": {"type": "object", "properties": {
                    "line": {"type": "string"}, "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}}}}},
            "responses": {"200": _CORRELATION, "400": _PROBLEM, "401": _PROBLEM, "404": _PROBLEM,
                          "422": {**_PROBLEM, "description": "the line carries no trace ID"},
                          "503": {**_PROBLEM, "description": "overloaded (a backend's bulkhead is full) or shutting down; see Retry-After"}},
        }},
        "/exemplars": {"get": {
            "summary": "Exemplars of the series a PromQL selector picks, newest and slowest first (metric → traces)",
            "parameters": [{"name": "query", "in": "query", "required": True, "schema": {"type": "string", "maxLength": 4096}},
                           *_WINDOW_PARAMS],
            "responses": {"200": {"description": "exemplars with their trace IDs and /correlate links",
                                  "content": {"application/json": {"schema": {"type": "object"}}}},
                          "400": _PROBLEM, "401": _PROBLEM, "502": _PROBLEM, "504": _PROBLEM},
        }},
        "/investigate": {"get": {
            "summary": "Why are this series' requests slow: its exemplar traces correlated together, suspects ranked",
            "parameters": [
                {"name": "query", "in": "query", "required": True, "schema": {"type": "string", "maxLength": 4096},
                 "description": "PromQL selector or histogram expression whose exemplars point at the traces"},
                *_WINDOW_PARAMS,
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 20}},
                {"name": "threshold", "in": "query", "required": False, "schema": {"type": "number", "exclusiveMinimum": 0},
                 "description": "slow means an exemplar value at or above this (the metric's unit)"},
                {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["json", "text", "html"]},
                 "description": "default: HTML when Accept prefers text/html (browsers), else JSON"},
            ],
            "responses": {"200": {"description": "the investigation (or `no exemplars in that window` and what to try)",
                                  "content": {"application/json": {"schema": {"type": "object", "required": [
                                      "query", "window", "summary", "suspects", "traces", "failed"]}},
                                              "text/plain": {"schema": {"type": "string"}},
                                              "text/html": {"schema": {"type": "string"}}}},
                          "400": _PROBLEM, "401": _PROBLEM, "502": _PROBLEM, "504": _PROBLEM},
        }},
        "/healthz": {"get": {"summary": "Liveness", "security": [],
                             "responses": {"200": {"description": "alive", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/readyz": {"get": {"summary": "Readiness: probes each backend", "security": [],
                            "responses": {"200": {"description": "all backends ready", "content": {"application/json": {"schema": {"type": "object"}}}},
                                          "503": {"description": "a backend is not ready", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/metrics": {"get": {"summary": "Own metrics (Prometheus text or OpenMetrics with exemplars)",
                             "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": _PROBLEM}}},
        "/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": {"description": "OpenAPI", "content": {"application/json": {"schema": {"type": "object"}}}}, "401": _PROBLEM}}},
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Problem": {"type": "object", "required": ["title", "status"], "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "param": {"type": "string"}}},
            "Correlation": {"type": "object", "required": ["trace_id", "window", "summary", "spans", "logs", "exemplars",
                                                          "critical_path", "findings", "sources", "links"],
                            "properties": {
                                "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                                "window": {"type": "object"}, "summary": {"type": "object"},
                                "spans": {"type": "array", "items": {"type": "object"}},
                                "logs": {"type": "array", "items": {"type": "object"}},
                                "exemplars": {"type": "array", "items": {"type": "object"}},
                                "critical_path": {"type": "array", "items": {"type": "string"}},
                                "findings": {"type": "array", "items": {"type": "object"}},
                                "sources": {"type": "object"}, "links": {"type": "object"},
                                "availability": {"type": ["string", "null"], "description":
                                                 "when a source could not be asked: which, why, and what that means"}}},
        },
    },
    "security": [{"bearer": []}, {}],
}

"""Jinja2 templates (autoescaped: every string on a page came from a backend) → aiohttp responses."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2
from aiohttp import web

from correlator import __version__

__all__ = ["html_response", "render"]

_TOKEN = re.compile(r"[^a-z0-9_-]")


def _token(value: object) -> str:
    """A value from the data as a CSS class fragment: only [a-z0-9_-] survives."""
    return _TOKEN.sub("_", str(value).lower())[:40]


def _pairs(value: object) -> list[tuple[str, str]]:
    if not isinstance(value, Mapping):
        return [("value", str(value))]
    return [(str(k), v if isinstance(v, str) else str(v)) for k, v in value.items()]


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("correlator.web", "templates"),
        autoescape=True,  # every template is HTML; nothing is marked safe by hand
        trim_blocks=True, lstrip_blocks=True, auto_reload=False, undefined=jinja2.StrictUndefined,
    )
    env.filters["token"] = _token
    env.filters["pairs"] = _pairs
    env.globals["version"] = __version__
    return env


def render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def html_response(text: str, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=headers)

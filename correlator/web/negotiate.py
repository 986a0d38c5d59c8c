"""Pure: does this request want the HTML page? `?format=html`, or an Accept that prefers text/html."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["wants_html"]

_JSON_TYPES = ("application/json", "application/problem+json")


def _quality(accept: str, media_type: str) -> float:
    best = 0.0
    for part in accept.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() != media_type:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best = max(best, q)
    return best


def wants_html(query: Mapping[str, str], accept: str | None) -> bool:
    """Browsers send `Accept: text/html,…`; curl and API clients send */* or JSON and keep getting JSON.

    An explicit `?format=` wins over Accept, so `?format=json` in a browser still shows JSON.
    """
    fmt = query.get("format")
    if fmt is not None:
        return fmt == "html"
    if not accept:
        return False
    html = _quality(accept, "text/html")
    return html > 0 and html >= max(_quality(accept, t) for t in _JSON_TYPES)

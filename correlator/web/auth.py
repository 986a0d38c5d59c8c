"""The browser's way to pass `server.auth_token`: a login form that sets an HttpOnly cookie.

The cookie holds an HMAC of the token, not the token: what a browser stores (or leaks) cannot
be replayed as a bearer token against the API, and it changes whenever the token does.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["COOKIE", "cookie_valid", "cookie_value", "safe_next"]

COOKIE = "correlator_session"


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"correlator browser session v1", hashlib.sha256).hexdigest()


def cookie_valid(given: str | None, token: str) -> bool:
    # compare_digest: the time taken must not reveal how much of the value matched.
    return given is not None and hmac.compare_digest(given.encode(), cookie_value(token).encode())


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a path on this service (no open redirect to //evil or http://evil)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or any(
            ord(ch) < 0x20 for ch in target):
        return "/"
    return target

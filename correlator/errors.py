"""The whole exception tree, in one place so the API and the CLI map it the same way.

    CorrelatorError
    ├── InvalidInput              → 400 problem+json, before any backend call
    │   └── InvalidTraceId
    ├── ConfigError               → refuse to start; names the key and the bad value
    ├── ShuttingDown              → 503 problem+json + Retry-After: the service is closing, no new correlation
    └── SourceError(source=…)     → never leaves correlate(): becomes a status in `sources`
        ├── SourceUnavailable     connection refused / reset / DNS
        ├── SourceTimeout         read timeout or the per-source deadline
        ├── SourceHTTPError       a non-2xx answer the source could not use
        └── SourceProtocolError   a 2xx answer that is not what the API documents
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CorrelatorError",
    "InvalidInput",
    "InvalidTraceId",
    "ShuttingDown",
    "SourceError",
    "SourceHTTPError",
    "SourceProtocolError",
    "SourceTimeout",
    "SourceUnavailable",
]


class CorrelatorError(Exception):
    """Base of every error this package raises on purpose."""


class InvalidInput(CorrelatorError):
    """A caller's input that cannot be used; `param` names the parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


class InvalidTraceId(InvalidInput):
    def __init__(self, value: str, reason: str) -> None:
        super().__init__("trace_id", f"{value!r} is not a valid trace ID: {reason}")
        self.value = value


class ConfigError(CorrelatorError):
    """A configuration value that cannot be used; `key` is the dotted path."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        super().__init__(f"config {key}={value!r}: {reason}")
        self.key = key
        self.value = value


class ShuttingDown(CorrelatorError):
    """The correlator is closing (its backend clients next): it starts no correlation, and one it ended is refused."""


class SourceError(CorrelatorError):
    """A backend failed; `status` is what `sources[<name>].status` will say."""

    status = "error"
    truncated = False  # True when a size limit cut the answer

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message


class SourceUnavailable(SourceError):
    status = "unavailable"


class SourceTimeout(SourceError):
    status = "timeout"


class SourceHTTPError(SourceError):
    def __init__(self, source: str, status_code: int, message: str) -> None:
        super().__init__(source, message)
        self.status_code = status_code


class SourceProtocolError(SourceError):
    status = "bad_response"

"""Decode a big answer's envelope only, its long arrays left as undecoded slices of the body.

Why: a fully parsed answer is many times its size in Python objects, all alive at once until
the model is built (100k spans: a 32 MB body → ~150 MB of dicts; 500k Loki lines: 86 MB →
~450 MB, plus orjson's transient document on top; bench P5). msgspec splits the envelope into
Structs whose bulky arrays are `msgspec.Raw` (zero-copy views of the body, 64 bytes each); each
item is then decoded on its own by orjson — the same decoder, so the same values, as a full
parse — and dropped once its model object is built.

The envelope types only name the shape that needs no complaint. Valid JSON of any other shape
decodes to None, and the caller's full parse of the same body (`whole`) says what is wrong in
the words it always used.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import msgspec
import orjson

__all__ = ["NotJson", "envelope", "item", "whole"]

T = TypeVar("T")


class NotJson(ValueError):
    """The body, or one item of it, is not JSON."""


@functools.cache
def _decoder(shape: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(shape)


def envelope(body: bytes | bytearray, shape: type[T]) -> T | None:
    """`body` as `shape`, or None when it is JSON of another shape. Raises NotJson."""
    try:
        # The shapes are classes, so hashable; mypy cannot see it through functools.cache.
        decoded: T = _decoder(shape).decode(body)  # type: ignore[arg-type]
        return decoded
    except msgspec.ValidationError:
        return None
    except msgspec.DecodeError as exc:
        raise NotJson(str(exc)) from None


def item(raw: msgspec.Raw) -> Any:
    """One undecoded part of an envelope → Python, as orjson parses it. Raises NotJson."""
    try:
        return orjson.loads(memoryview(raw))
    except orjson.JSONDecodeError as exc:
        raise NotJson(str(exc)) from None


def whole(body: bytes | bytearray) -> Any:
    """The full parse, for bodies whose shape `envelope` did not take. Raises NotJson."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NotJson(str(exc)) from None

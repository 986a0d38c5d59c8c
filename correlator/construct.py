"""Build frozen slots dataclasses without their `__init__`, for the parse loops that make thousands.

A frozen dataclass's `__init__` sets each field through `object.__setattr__` (its guard against
assignment): 1.7 µs for an 8-field `Exemplar` here, most of a 20k-exemplar parse. Setting the slots
through their descriptors, in a function generated once per class, makes the same object in half
that (`tests/test_construct.py` checks equality, repr and hash with the real `__init__`). Only for
classes whose `__init__` does nothing but assign (no `__post_init__`, no defaults computed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["fast_constructor"]

T = TypeVar("T")


def fast_constructor(cls: type[T]) -> Callable[..., T]:
    """A function taking every field positionally, in declaration order, that returns `cls(*values)`."""
    if hasattr(cls, "__post_init__") or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: only slots dataclasses whose __init__ only assigns")
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    namespace.update({f"_set_{name}": getattr(cls, name).__set__ for name in names})
    body = "".join(f"    _set_{name}(obj, {name})\n" for name in names)
    source = f"def construct({', '.join(names)}):\n    obj = _new(_cls)\n{body}    return obj\n"
    exec(source, namespace)  # the names are the dataclass's own field names: identifiers
    construct: Callable[..., T] = namespace["construct"]
    construct.__qualname__ = f"fast_constructor({cls.__name__})"
    return construct

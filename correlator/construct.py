"""Build frozen slots dataclasses without their `__init__`, for the parse loops that make thousands.

A frozen dataclass's `__init__` sets each field through `object.__setattr__` (its guard against
assignment): 1.7 µs for an 8-field `Exemplar` here, most of a 20k-exemplar parse. Setting the slots
through their descriptors, in a function generated once per class, makes the same object in half
that (`tests/test_construct.py` checks equality, repr and hash with the real `__init__`). Only for
classes whose `__init__` does nothing but assign (no `__post_init__`, no defaults computed).

With the native extension (native/src/construct.rs) the object is made without a Python frame: the class's
allocator and each value stored in its slot, what `object.__new__` and the descriptors do (a P3 correlation makes
~40 of these: placements, findings, the analysis, the answer). The Python function stays the reference and takes
any call with keywords or a wrong count of arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

from correlator.sources import _native

__all__ = ["fast_constructor", "python_constructor"]

T = TypeVar("T")


def fast_constructor(cls: type[T]) -> Callable[..., T]:
    """A function taking every field positionally, in declaration order, that returns `cls(*values)`."""
    construct = python_constructor(cls)
    native = getattr(_native.MODULE, "SlotConstructor", None)
    if native is None:
        return construct
    try:
        made: Callable[..., T] = native(cls, [f.name for f in fields(cls)], construct)  # type: ignore[arg-type]
    except TypeError:  # a field that is not a plain object slot, or a `__new__` of its own: Python's way
        return construct
    return made


def python_constructor(cls: type[T]) -> Callable[..., T]:
    """`fast_constructor` in Python: the reference, and the way without the extension."""
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

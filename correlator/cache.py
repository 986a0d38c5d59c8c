"""A bounded LRU with a time-to-live, for completed correlations.

A finished trace is immutable, so its correlation can be served again without asking any
backend. Keys include the tenant: one tenant must never receive another's cached answer.
Hand-written (30 lines) rather than a dependency: cachetools' TTLCache would do, but it
isn't otherwise needed and this keeps the hot path free of locks we don't need on one loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["TTLCache"]

V = TypeVar("V")


class TTLCache(Generic[V]):
    def __init__(self, max_entries: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_entries
        self._ttl = ttl_seconds
        self._clock = clock
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        entry = self._items.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires < self._clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    @property
    def enabled(self) -> bool:
        """Whether `put` keeps anything (a size or time-to-live of 0 turns the cache off)."""
        return self._max > 0 and self._ttl > 0

    def put(self, key: Hashable, value: V) -> None:
        if not self.enabled:
            return
        self._items[key] = (self._clock() + self._ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def pop(self, key: Hashable) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)

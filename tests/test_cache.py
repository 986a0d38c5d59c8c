"""The correlation cache: bounded, expiring, least-recently-used evicted first."""

from correlator.cache import TTLCache


def test_expires_after_ttl_and_evicts_lru() -> None:
    now = [0.0]
    cache: TTLCache[str] = TTLCache(2, 10, clock=lambda: now[0])
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # a is now the most recently used
    cache.put("c", "C")
    assert cache.get("b") is None and cache.get("a") == "A" and cache.get("c") == "C"
    now[0] = 11
    assert cache.get("a") is None and len(cache) == 1


def test_zero_size_disables() -> None:
    cache: TTLCache[str] = TTLCache(0, 10)
    cache.put("a", "A")
    assert cache.get("a") is None

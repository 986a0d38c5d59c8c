"""Waiting in a test for what it waits for, not for a time that is enough on a fast, idle machine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Waits, loop turn by loop turn, until `condition` holds. Bounded: a condition that never comes fails the test
    (TimeoutError) instead of hanging it; `within` is far above any machine's time, it is not what the test measures."""
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.001)

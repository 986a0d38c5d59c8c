"""`wait_of`'s cheap first look (`_may_name_a_wait`) never passes over a text `_ANY_WAIT` would find a wait in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from correlator.analysis.events import _ANY_WAIT, _WAITS, _may_name_a_wait, wait_of
from correlator.model import LogLine, Span

_PIECES = st.sampled_from(["lock", "LOCKED", "Locking", "mutex", "semaphore", "rate-limit", "Rate Limited", "ratelimit",
                           "throttled", "POOL", "pooled", "queue", "Queued", "back-off", "backoff", "Back off", "retry",
                           "RETRIES", "retried", "wait", "Waiting", "waited", "blocked", "stall", "stalled", "ſemaphore",
                           "loc\u212a", "waİt", "w", "ait", "k", " ", "-", "_", "=", '"', "x1", "é", "\u0131"])


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.lists(_PIECES, max_size=8).map("".join), st.text(max_size=60),
                 st.text(alphabet=st.characters(max_codepoint=127), max_size=60)))
def test_the_first_look_misses_no_wait(text: str) -> None:
    if _ANY_WAIT.search(text) is not None or any(pattern.search(text) for _what, pattern in _WAITS):
        assert _may_name_a_wait(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.lists(_PIECES, max_size=6).map("".join), max_size=4))
def test_wait_of_reads_as_before(texts: list[str]) -> None:
    span = Span("a" * 16, None, "svc", "op", 0, 100)
    lines = [LogLine(f"l{i}", i, text) for i, text in enumerate(texts)]
    before = next(((what, text) for text in texts if _ANY_WAIT.search(text)
                   for what, pattern in _WAITS if pattern.search(text)), None)
    assert wait_of(span, lines) == before

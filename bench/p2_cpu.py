"""`bench/run.py p2`'s measurement of one size, timed in process CPU time and the minimum of the repeats.

On a shared machine (other processes on the cores) wall-clock medians move ×2 between runs; CPU
time and the minimum move far less. Used for the A/B figures of docs/performance-native.md:

    python bench/p2_cpu.py 10000 50000 2000 7      # spans, lines, exemplars, repeats → one table row
    CORRELATOR_NATIVE=0 python bench/p2_cpu.py …   # the same without the native extension

It measures the tree it sits in (the `correlator` beside it): to compare another tree, run its copy.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import run


def main() -> None:
    spans, lines, exemplars, repeats = map(int, sys.argv[1:5])
    # p2_size reads both through their modules at call time: CPU time instead of wall time, min instead of median.
    time.perf_counter = time.process_time  # type: ignore[assignment]
    statistics.median = min  # type: ignore[assignment]
    run.p2_size(spans, lines, exemplars, repeats)


if __name__ == "__main__":
    main()

"""Timing helpers shared by the demo and the benchmarks."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_latency_ms(fn: Callable[[], object], warmup: int = 10, runs: int = 100) -> float:
    """Median wall time of `fn()` in milliseconds after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)

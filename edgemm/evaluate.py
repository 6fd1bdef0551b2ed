"""Timing helpers shared by the demo and the benchmarks."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def call_times_ms(fn: Callable[[int], object], runs: int, warmup: int = 10) -> list[float]:
    """Wall time in milliseconds of `fn(i)` for i in 0..runs-1, after `warmup` untimed calls fn(0..warmup-1)."""
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def median_latency_ms(fn: Callable[[], object], warmup: int = 10, runs: int = 100) -> float:
    """Median wall time of `fn()` in milliseconds after `warmup` calls."""
    return statistics.median(call_times_ms(lambda _: fn(), runs, warmup))

"""One clock for every source: monotonic microseconds. Files played "as fast as possible" run on a
virtual timeline that the video advances, so a file microphone stays in step with it."""
from __future__ import annotations

import threading
import time

BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0)  # waits between reopen attempts of a dead source (the last one repeats)


def backoff_s(failures: int) -> float:
    """How long to wait before the next reopen attempt after `failures` failed ones."""
    return BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]


def now_us() -> int:
    """Monotonic time in microseconds (never goes back, unaffected by wall-clock changes)."""
    return time.monotonic_ns() // 1000


class Timeline:
    """Real time: `now()` is the monotonic clock and `sleep_until` sleeps."""

    virtual = False

    def __init__(self) -> None:
        self._stop = threading.Event()

    def now(self) -> int:
        return now_us()

    def sleep_until(self, t_us: int) -> bool:
        """Wait until time `t_us`; False if the timeline was stopped first."""
        delay = (t_us - now_us()) / 1e6
        return not self._stop.wait(delay) if delay > 0 else not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()


class VirtualTimeline(Timeline):
    """Media time that only moves when `advance` is called (by the video source in fast mode)."""

    virtual = True

    def __init__(self, start_us: int = 0) -> None:
        super().__init__()
        self._now = start_us
        self._moved = threading.Condition()

    def now(self) -> int:
        with self._moved:
            return self._now

    def advance(self, t_us: int) -> None:
        with self._moved:
            self._now = max(self._now, t_us)
            self._moved.notify_all()

    def sleep_until(self, t_us: int) -> bool:
        with self._moved:
            while self._now < t_us and not self._stop.is_set():
                self._moved.wait(0.1)
        return not self._stop.is_set()

    def stop(self) -> None:
        super().stop()
        with self._moved:
            self._moved.notify_all()

"""A lock-protected ring buffer of mono audio with the clock time of its newest sample."""
from __future__ import annotations

import threading

import numpy as np


class AudioRing:
    """Holds the last `seconds` of mono float32 audio at `sample_rate`; writers append blocks stamped with
    the clock time of their last sample, readers take the window ending at any time still inside."""

    def __init__(self, sample_rate: int, seconds: float = 4.0) -> None:
        self.sample_rate = int(sample_rate)
        self._buf = np.zeros(int(seconds * sample_rate), np.float32)
        self._lock = threading.Condition()  # writers notify readers waiting for newer audio
        self._finished = False  # the source will write no more
        self._written = 0  # samples written since the start
        self._end_us: int | None = None  # clock time of the newest sample
        self.overflows = 0  # blocks the device reported it could not deliver in time

    def write(self, block: np.ndarray, end_us: int) -> None:
        """Append a mono block whose last sample was captured at `end_us`."""
        block = np.asarray(block, np.float32).reshape(-1)
        n = len(self._buf)
        with self._lock:
            if len(block) >= n:
                self._buf[:] = block[-n:]
            else:
                start = self._written % n
                first = min(len(block), n - start)
                self._buf[start : start + first] = block[:first]
                self._buf[: len(block) - first] = block[first:]
            self._written += len(block)
            self._end_us = int(end_us)
            self._lock.notify_all()

    def finish(self) -> None:
        """No more audio will come (a file microphone reached its end)."""
        with self._lock:
            self._finished = True
            self._lock.notify_all()

    def wait_for(self, end_us: int, timeout: float) -> bool:
        """Wait until the newest sample is at `end_us` or later; False if the source finished first or on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: (self._end_us or -1) >= end_us or self._finished, timeout) and (self._end_us or -1) >= end_us

    @property
    def end_us(self) -> int | None:
        """Clock time of the newest sample (None before the first write)."""
        with self._lock:
            return self._end_us

    def window(self, end_us: int, samples: int) -> tuple[np.ndarray, int] | None:
        """`samples` samples ending at `end_us` (or at the newest sample if `end_us` is later), and that end
        time; None when the buffer does not hold that window (too little audio, or too long ago)."""
        n = len(self._buf)
        with self._lock:
            if self._end_us is None:
                return None
            behind = max(0, round((self._end_us - end_us) * self.sample_rate / 1e6))  # samples after the window
            stop = self._written - behind
            start = stop - samples
            if start < 0 or start < self._written - n or samples > n:
                return None
            idx = np.arange(start, stop) % n
            return self._buf[idx], self._end_us - round(behind * 1e6 / self.sample_rate)

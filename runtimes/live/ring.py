"""A lock-protected ring buffer of mono audio with the clock time of its newest sample, and where the audio in it
stops being one contiguous stream (a gap, a block out of order or repeated, a reopened device)."""
from __future__ import annotations

import threading
from collections import deque
from typing import NamedTuple

import numpy as np

MIN_GAP_US = 2000  # timestamp jitter below this is never taken for lost audio
BREAKS_KEPT = 64


class Break(NamedTuple):
    """Contiguous audio starts again at sample `index` (counted since the start) because of `reason`."""

    index: int
    reason: str


class RingRead(NamedTuple):
    """What `AudioRing.read_from` returns: samples [start, written), the breaks inside, and the newest sample's time."""

    samples: np.ndarray
    start: int
    breaks: list[Break]
    written: int
    end_us: int | None


class AudioRing:
    """Holds the last `seconds` of mono float32 audio at `sample_rate`; writers append blocks stamped with
    the clock time of their last sample, readers (the live front-end) take what arrived since their last read."""

    def __init__(self, sample_rate: int, seconds: float = 4.0) -> None:
        self.sample_rate = int(sample_rate)
        self._buf = np.zeros(int(seconds * sample_rate), np.float32)
        self._lock = threading.Condition()  # writers notify readers waiting for newer audio
        self._finished = False  # the source will write no more
        self._written = 0  # samples written since the start
        self._end_us: int | None = None  # clock time of the newest sample
        self._breaks: deque[Break] = deque(maxlen=BREAKS_KEPT)
        self.overflows = 0  # blocks the device reported it could not deliver in time
        self.dropped_blocks = 0  # blocks out of order or repeated, never written

    def write(self, block: np.ndarray, end_us: int, contiguous: bool | None = None) -> None:
        """Append a mono block whose last sample was captured at `end_us`.

        `contiguous`: True when the source guarantees the block follows the previous one (PortAudio without an
        overflow), False when it knows it does not; None judges from the timestamps: a block starting more than half
        its own length (at least 2 ms) after the previous one ended follows a gap, and one ending at or before the
        previous end is out of order or repeated and is dropped. Either way the audio after it is a new stream."""
        block = np.asarray(block, np.float32).reshape(-1)
        n = len(self._buf)
        with self._lock:
            if self._end_us is not None and contiguous is not True:
                block_us = len(block) * 1e6 / self.sample_rate
                late_us = end_us - block_us - self._end_us
                if end_us <= self._end_us:
                    self.dropped_blocks += 1
                    self._breaks.append(Break(self._written, f"a block out of order or repeated (it ends {(self._end_us - end_us) / 1000:.1f} ms before the previous one); dropped"))
                    return
                if contiguous is False:
                    self._breaks.append(Break(self._written, "a discontinuity the source reported"))
                elif late_us > max(block_us / 2, MIN_GAP_US):
                    self._breaks.append(Break(self._written, f"a gap of {late_us / 1000:.1f} ms"))
            kept = block[-n:]  # a block longer than the ring: its newest part, at the place it belongs
            start = (self._written + len(block) - len(kept)) % n
            first = min(len(kept), n - start)
            self._buf[start : start + first] = kept[:first]
            self._buf[: len(kept) - first] = kept[first:]
            self._written += len(block)
            self._end_us = int(end_us)
            self._lock.notify_all()

    def mark_break(self, reason: str) -> None:
        """The next block does not follow the audio so far (e.g. the device was reopened)."""
        with self._lock:
            if self._written and not (self._breaks and self._breaks[-1].index == self._written):  # one per place
                self._breaks.append(Break(self._written, reason))

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

    def read_from(self, start: int) -> RingRead:
        """Every sample from `start` (counted since the first write) to the newest one still held — starting later
        when the ring has overwritten some — with the breaks among them."""
        n = len(self._buf)
        with self._lock:
            start = max(start, self._written - n)
            first, count = start % n, self._written - start
            samples = np.concatenate([self._buf[first : first + count], self._buf[: max(0, first + count - n)]])
            breaks = [b for b in self._breaks if b.index >= start]
            return RingRead(samples, start, breaks, self._written, self._end_us)

"""The live audio front-end: the model's audio tensor computed incrementally from a microphone's ring.

Each answer resamples only the audio that arrived since the last one (soxr's streaming resampler, whose output is
bit-identical to resampling the whole recording at once), computes the log-mel of only the new hops, and keeps
the feature frames in a ring. The window given to the model ends on the hop grid at (or just before) the frame's
time, so its features are exactly `preprocess.log_mel` of the same samples. A break in the audio (a gap, a block
out of order or repeated, a reopened device, or falling behind the ring) restarts the stream: no feature ever
mixes audio from both sides, and until a full window has arrived again the answers are image-only.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..errors import BackendUnavailableError
from ..preprocess import AudioSpec, clip_frames, mel_frames
from .ring import AudioRing

RESAMPLE_QUALITY = "HQ"  # soxr's default: flat to 0.9 x Nyquist; about 20-40 ms of filter delay at 16 kHz out


def stream_resampler(rate_in: int, rate_out: int):
    """A soxr `ResampleStream` from `rate_in` to `rate_out` (float32 mono); one-line error naming the extra."""
    try:
        import soxr
    except ImportError as exc:
        raise BackendUnavailableError(f"resampling a {rate_in} Hz live stream to {rate_out} Hz", "soxr", "app") from exc
    return soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality=RESAMPLE_QUALITY)


class AudioWindow(NamedTuple):
    """The model's audio tensor for one answer, the clock time of its last sample, and its level."""

    tensor: np.ndarray  # (1, n_mels, frames) log-mel or (1, clip_samples) waveform, float32
    end_us: int
    level_db: float


class Tail:
    """The newest rows of a sequence that only grows, held contiguously: rows are appended to a buffer twice the
    size kept, which slides back (one copy) when full, so any held range is a view, never a gather."""

    def __init__(self, keep: int, row: tuple[int, ...] = ()) -> None:
        self.keep = keep
        self._buf = np.zeros((2 * keep, *row), np.float32)
        self.base = 0  # index (counted since the start) of the buffer's first row
        self.count = 0  # rows appended since the start

    def append(self, rows: np.ndarray) -> None:
        n, rows = len(rows), rows[-self.keep :]
        end = self.count + n
        if end - self.base > len(self._buf) or n > self.keep:  # (more than kept: the rows before the newest are gone)
            base = end - self.keep
            held = max(0, self.count - base)
            self._buf[:held] = self._buf[self.count - held - self.base : self.count - self.base]
            self.base = base
        self._buf[end - len(rows) - self.base : end - self.base] = rows
        self.count = end

    def held(self, start: int, stop: int) -> bool:
        return self.base <= start and stop <= self.count

    def get(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) (check `held` first): a view."""
        return self._buf[start - self.base : stop - self.base]


class StreamFrontEnd:
    """Incremental features of one microphone for a model's `AudioSpec` (log-mel or waveform)."""

    def __init__(self, ring: AudioRing, spec: AudioSpec, seconds: float = 4.0, on_reset: Callable[[str], None] | None = None) -> None:
        self.ring, self.spec, self.on_reset = ring, spec, on_reset
        self._ratio = ring.sample_rate / spec.sample_rate  # source samples per model sample
        self._clip, self._nframes = spec.clip_samples, spec.frames  # (properties computed on every read)
        self._keep = max(int(seconds * spec.sample_rate), self._clip + spec.win_length)  # model-rate samples held
        self._log_mel = spec.features == "log-mel"
        self.resets = 0  # times the stream restarted after a break
        self._consumed = 0  # source samples taken from the ring (counted since its first write): the newest one's
        self._end_us = None  # clock time, when last read, is the time base
        self._restart(0)

    def _restart(self, origin: int) -> None:
        self._origin = origin  # source sample where the current contiguous stream starts
        self._resampler = stream_resampler(self.ring.sample_rate, self.spec.sample_rate) if self._ratio != 1 else None
        self._samples = Tail(self._keep)  # model-rate samples of the current stream
        self._frames = Tail(self._keep // self.spec.hop_length, (self.spec.n_mels,))  # and their feature frames

    def _reset(self, origin: int, reason: str) -> None:
        self._restart(origin)
        self.resets += 1
        if self.on_reset is not None:
            self.on_reset(f"{reason}; the audio features restart there")

    def update(self) -> None:
        """Take the audio that arrived since the last call: resample it, compute its new frames."""
        got = self.ring.read_from(self._consumed)
        if got.start > self._consumed and self._consumed == 0:
            self._restart(got.start)  # started after the ring had filled: begin with what it holds
        elif got.start > self._consumed:
            self._reset(got.start, f"the front-end fell {(got.start - self._consumed) / self.ring.sample_rate:.2f} s behind the microphone")
        pos = got.start
        for brk in (b for b in got.breaks if b.index > self._origin):  # one at the origin has been handled
            self._feed(got.samples[pos - got.start : brk.index - got.start])
            self._reset(brk.index, f"microphone audio breaks at {brk.index / self.ring.sample_rate:.2f} s: {brk.reason}")
            pos = brk.index
        self._feed(got.samples[pos - got.start :])
        self._consumed, self._end_us = got.written, got.end_us

    def _feed(self, source: np.ndarray) -> None:
        x = self._resampler.resample_chunk(source) if self._resampler is not None and len(source) else source
        self._samples.append(x)
        spec, samples, frames = self.spec, self._samples, self._frames
        if not self._log_mel:
            return
        first = max(frames.count, -(-samples.base // spec.hop_length))  # new frames whose samples are all held
        last = (samples.count - spec.win_length) // spec.hop_length  # the newest frame with all its samples
        if last < first:
            return
        if first > frames.count:  # a stall longer than what is held: the frames in between can never be asked for
            frames.append(np.zeros((first - frames.count, spec.n_mels), np.float32))
        tail = samples.get(first * spec.hop_length, last * spec.hop_length + spec.win_length)
        frames.append(mel_frames(clip_frames(tail, spec), spec))

    def window(self, end_us: int) -> AudioWindow | None:
        """The model's audio tensor for the clip ending at `end_us` (on the hop grid, at or before it; the newest
        there is when `end_us` is later); None when the current stream does not hold a whole clip there."""
        self.update()
        if self._end_us is None:
            return None
        spec, rate = self.spec, self.ring.sample_rate
        stop_source = self._consumed - max(0, math.ceil((self._end_us - end_us) * rate / 1e6 - 1e-6))  # samples captured by end_us
        stop = min(self._samples.count, (stop_source - self._origin) * spec.sample_rate // rate)
        start = stop - self._clip
        first = start // spec.hop_length  # log-mel: the window starts on the hop grid
        if self._log_mel:
            start = first * spec.hop_length
        if start < 0 or not self._samples.held(start, start + self._clip):
            return None
        if self._log_mel and not self._frames.held(first, first + self._nframes):
            return None
        samples = self._samples.get(start, start + self._clip)
        tensor = self._frames.get(first, first + self._nframes).T[None] if self._log_mel else samples[None]
        end_source = self._origin + (start + self._clip) * self._ratio  # just after the window's last sample
        end = self._end_us - round((self._consumed - end_source) * 1e6 / rate)
        level = 10 * math.log10(float(np.dot(samples, samples)) / len(samples) + 1e-18)  # (scalar math in Python floats)
        return AudioWindow(np.ascontiguousarray(tensor, np.float32), end, level)

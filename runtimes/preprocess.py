"""Numpy preprocessing shared by training, calibration and every device: one implementation.

Image: grey/colour conversion, centre square crop, resize, scale, normalise, CHW layout.
Audio: int16/float mono mix-down, resampling, fixed-length window, log-mel spectrogram.
The parameters are data (`ImageSpec`, `AudioSpec`) recorded in the bundle manifest.
"""
from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, fields
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from .errors import InputError


def _from_dict(cls, data: dict[str, Any]):
    known = {f.name for f in fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
    return cls(**kwargs)


@dataclass(frozen=True)
class ImageSpec:
    """How a raw uint8 camera/image frame becomes the model's image tensor (C, H, W)."""

    height: int = 32
    width: int = 32
    channels: int = 1  # 1 = grey (luma of colour input), 3 = colour
    color_order: str = "RGB"  # channel order the model sees when channels == 3
    mean: tuple[float, ...] = (0.13,)
    std: tuple[float, ...] = (0.31,)
    crop: str = "center"  # non-square frames are centre-cropped to a square first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImageSpec":
        return _from_dict(cls, data)

    @cached_property  # (read per frame: kept once computed; not a field)
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


@dataclass(frozen=True)
class AudioSpec:
    """How raw mono audio becomes the model's log-mel tensor (1, n_mels, frames)."""

    sample_rate: int = 16000
    clip_seconds: float = 1.0
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 8000.0
    log_floor: float = 1e-6
    mean: float = 0.0
    std: float = 1.0
    fit: str = "center"  # longer clips: keep the centre window ("center") or the newest ("last")
    features: str = "log-mel"  # what the model takes: "log-mel" (1, n_mels, frames) or "waveform" (1, clip_samples)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AudioSpec":
        return _from_dict(cls, data)

    @cached_property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @cached_property
    def frames(self) -> int:
        return 1 + (self.clip_samples - self.win_length) // self.hop_length

    @cached_property
    def shape(self) -> tuple[int, ...]:
        return (1, self.n_mels, self.frames) if self.features == "log-mel" else (1, self.clip_samples)


# ----------------------------------------------------------------------------- image

_LUMA = {"RGB": (0.299, 0.587, 0.114), "BGR": (0.114, 0.587, 0.299)}


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"{name}: expected uint8 pixels, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InputError(f"{name}: expected HxW or HxWx3 pixels, got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise InputError(f"{name}: image of shape {image.shape} is too small")
    return image


# The log-mel's work array for a whole clip (200 KB at 1 s; OpenCV's DFT runs in place in it) comes from a per-thread
# buffer that is kept: a fresh one above glibc's mmap threshold (128 KB) is mmapped, or grows the heap that glibc trims
# back after the call, and in a process that calls predict() now and then the page faults of touching it cost more than the DFT
# (preprocess_audio of 1 s alone: 515 -> 205 µs on this 2-core VM). Smaller arrays (the live front-end's few new
# frames) come fresh from malloc's free lists, which is cheaper; larger ones than SCRATCH_BYTES are not kept. A thread
# holds at most SCRATCH_BYTES per key this way for as long as it lives.
# (A kept float32 copy of a camera frame made OpenCV's resize path slower, not faster: measured, not used.)
SCRATCH_MIN_BYTES, SCRATCH_BYTES = 128 << 10, 16 << 20
_scratch = threading.local()


def scratch(key: str, shape: tuple[int, ...], dtype: np.dtype = np.float32) -> np.ndarray | None:
    """An uninitialised array from this thread's kept buffer `key` (grown as needed), or None when its size is not
    between SCRATCH_MIN_BYTES and SCRATCH_BYTES (make a fresh one): overwritten by the thread's next call for that
    key, so never return it."""
    size = math.prod(shape) * np.dtype(dtype).itemsize
    if not SCRATCH_MIN_BYTES <= size <= SCRATCH_BYTES:
        return None
    held = getattr(_scratch, key, None)
    if held is None or held.nbytes < size:
        held = np.empty(size, np.uint8)
        setattr(_scratch, key, held)
    return held[:size].view(dtype).reshape(shape)


def _center_square(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


@lru_cache(maxsize=1)
def _opencv():
    """OpenCV when it is installed (the `app` extra): its resize and FFT give the same numbers as numpy's, faster."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def _box_factor(n: int, size: int) -> tuple[int, int]:
    """The integer box-filter factor for shrinking `n` towards `size` (1: none) and the rows it keeps (a whole
    number of boxes; the remainder at the end is dropped)."""
    factor = max(1, n // size)
    return factor, n - n % factor


def _resize_axis(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Resize one axis: box-filter down by the integer factor, then linear with half-pixel centres."""
    factor, keep = _box_factor(x.shape[axis], size)
    if factor >= 2:
        x = np.take(x, np.arange(keep), axis=axis)
        shape = list(x.shape)
        shape[axis : axis + 1] = [keep // factor, factor]
        x = x.reshape(shape).mean(axis=axis + 1, dtype=np.float32)
    n = x.shape[axis]
    if n == size:
        return x
    pos = np.clip((np.arange(size) + 0.5) * (n / size) - 0.5, 0, n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = size
    frac = frac.reshape(shape)
    return np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac


def resize(image: np.ndarray, height: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 or float (H, W[, C]) → float32 (height, width[, C]), written into `out` when given (a C-contiguous
    float32 array of that shape): a box filter by the integer factor per axis, then linear interpolation with
    half-pixel centres. OpenCV (INTER_AREA at an integer factor, then INTER_LINEAR, on float32) computes exactly
    this, faster; numpy otherwise. Both agree to float rounding (tested)."""
    cv2 = _opencv()
    if cv2 is None or image.ndim == 3 and image.shape[2] > 4:
        x = _resize_axis(_resize_axis(image.astype(np.float32), height, 0), width, 1)
    else:
        (fy, h), (fx, w) = _box_factor(image.shape[0], height), _box_factor(image.shape[1], width)
        x = image[:h, :w]  # OpenCV takes rows with a stride: a float32 crop is not copied
        x = x if x.dtype == np.float32 else x.astype(np.float32)
        if fy > 1 or fx > 1:
            x = cv2.resize(x, (w // fx, h // fy), interpolation=cv2.INTER_AREA)
        if x.shape[:2] != (height, width):
            x = cv2.resize(x, (width, height), dst=out, interpolation=cv2.INTER_LINEAR)  # into `out` where it fits
    if out is None:
        return x.reshape(height, width, *image.shape[2:])
    if x is not out:  # (numpy's, or OpenCV made a new array: `out` did not fit, or no resize was left)
        np.copyto(out, x.reshape(out.shape))
    return out


def to_luma(image: np.ndarray, color_order: str) -> np.ndarray:
    """uint8 or float (H, W, 3 or 4) in `color_order` → float32 (H, W) luma (0.299 R + 0.587 G + 0.114 B)."""
    return image[:, :, :3].astype(np.float32) @ _luma(color_order)


def preprocess_image(image: np.ndarray, spec: ImageSpec, color_order: str = "RGB", name: str = "image", out: np.ndarray | None = None) -> np.ndarray:
    """Turn one uint8 HxW or HxWx3 frame (in `color_order`) into a float32 (C, H, W) tensor, written into `out` when
    given (a float32 array of that shape).

    Crop; for a grey model, luma on the crop (the rows and columns the resize keeps); resize; channel order and
    normalisation. A live answer calls this once per frame right after an inference call has left the caches cold,
    where each numpy or OpenCV call costs ~5-10 µs, so with OpenCV a grey model's luma and normalisation are one
    affine `cv2.transform` before the resize (an average of pixels: it commutes with both, to float rounding)."""
    image = _check_image(image, name)
    if color_order not in _LUMA:
        raise InputError(f"{name}: colour order must be RGB or BGR, got {color_order!r}")
    if spec.crop == "center":
        image = _center_square(image)
    if out is None:
        out = np.empty(spec.shape, np.float32)
    elif out.shape != spec.shape or out.dtype != np.float32:
        raise InputError(f"{name}: out must be float32 {spec.shape}, got {out.dtype} {out.shape}")
    cv2 = _opencv()
    if image.ndim == 3 and spec.channels == 1:  # one channel to resize
        (_, h), (_, w) = _box_factor(image.shape[0], spec.height), _box_factor(image.shape[1], spec.width)
        if cv2 is not None:
            grey = cv2.transform(image[:h, :w, :3].astype(np.float32), _luma_affine(color_order, tuple(spec.mean), tuple(spec.std)))
            resize(grey, spec.height, spec.width, out[0])
            return out
        image = to_luma(image[:h, :w], color_order)
    x = resize(image[:, :, :3] if image.ndim == 3 else image, spec.height, spec.width)
    if x.ndim == 3 and color_order != spec.color_order:
        x = x[:, :, ::-1]
    elif x.ndim == 2 and spec.channels == 3:
        x = np.repeat(x[:, :, None], 3, axis=2)
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    scale, shift = _normalisation(tuple(spec.mean), tuple(spec.std))
    np.multiply(x, scale, out=out)
    return np.subtract(out, shift, out=out)


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.setflags(write=False)  # shared by every caller and thread
    return arrays


@lru_cache(maxsize=2)
def _luma(color_order: str) -> np.ndarray:
    return _read_only(np.asarray(_LUMA[color_order], np.float32))[0]


@lru_cache(maxsize=8)
def _luma_affine(color_order: str, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(1, 4) float32 for `cv2.transform`: pixels 0..255 (3 channels) → normalised luma, (luma / 255 - mean) / std."""
    scale, shift = (float(v.reshape(-1)[0]) for v in _normalisation(mean, std))
    return _read_only(np.asarray([[*(np.float64(_LUMA[color_order]) * scale), -shift]], np.float32))[0]


@lru_cache(maxsize=8)
def _normalisation(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) per channel, (C, 1, 1) float32: pixels 0..255 → (x / 255 - mean) / std."""
    sd = np.asarray(std, np.float32).reshape(-1, 1, 1)
    return _read_only(np.float32(1 / 255) / sd, np.asarray(mean, np.float32).reshape(-1, 1, 1) / sd)


# ----------------------------------------------------------------------------- audio


def to_mono_float(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """int16/int32/float PCM, mono (N,) or multi-channel (N, C) → float32 mono in [-1, 1] (float32 mono input is
    returned as it is, not copied)."""
    if not isinstance(audio, np.ndarray):
        raise InputError(f"{name}: expected a numpy array, got {type(audio).__name__}")
    if audio.ndim not in (1, 2):
        raise InputError(f"{name}: expected (samples,) or (samples, channels), got shape {audio.shape}")
    if audio.size == 0:
        raise InputError(f"{name}: audio is empty")
    if audio.dtype.kind == "f":
        flat = audio.reshape(-1)  # a sum of squares is finite only without NaN or inf (cheaper than isfinite's mask);
        if not math.isfinite(np.dot(flat, flat)) and not np.isfinite(flat).all():  # else it may just overflow
            raise InputError(f"{name}: audio contains NaN or inf")
        x = audio.astype(np.float32, copy=False)
    elif audio.dtype == np.int16:
        x = audio.astype(np.float32) / 32768.0
    elif audio.dtype == np.int32:
        x = (audio / 2147483648.0).astype(np.float32)
    else:
        raise InputError(f"{name}: expected float32, int16 or int32 samples, got {audio.dtype}")
    return x.mean(axis=1) if x.ndim == 2 else x


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling by zero-padding/truncating the spectrum (exact for whole clips)."""
    if rate_in == rate_out:
        return audio
    if rate_in <= 0:
        raise InputError(f"sample rate must be positive, got {rate_in}")
    n_out = int(round(len(audio) * rate_out / rate_in))
    spectrum = np.fft.rfft(audio.astype(np.float64))
    keep = min(len(spectrum), n_out // 2 + 1)
    out = np.fft.irfft(spectrum[:keep], n_out) * (n_out / len(audio))
    return out.astype(np.float32)


def fit_length(audio: np.ndarray, n: int, mode: str = "center") -> np.ndarray:
    """Zero-pad (at the end) or cut to exactly `n` samples, keeping the centre or the newest part."""
    if len(audio) == n:
        return audio
    if len(audio) < n:
        return np.pad(audio, (0, n - len(audio)))
    start = (len(audio) - n) // 2 if mode == "center" else len(audio) - n
    return audio[start : start + n]


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """HTK-scale triangular mel filters, shape (n_fft // 2 + 1, n_mels), float32."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / (centre - lower)
    falling = (upper - freqs[None]) / (upper - centre)
    return np.maximum(0, np.minimum(rising, falling)).T.astype(np.float32)


# OpenBLAS (numpy's BLAS) runs an sgemm on one thread below M*N*K = 65536 * 4; above, it wakes its worker threads,
# which then spin, fighting the inference runtime's threads for the cores: with onnxruntime on 2 cores, batch-1
# predict() took 8 ms instead of 0.6 ms. The mel projection of a clip is cut into products below that size: the
# bank's non-zero blocks (runs of neighbouring filters and the bins they span, at most BLAS_ONE_THREAD_MNK / frames
# entries: a clip's frames times a block is one single-threaded product; never fewer than MIN_BANK_BLOCK entries), in
# runs of frames. Skipping the bank's zeros (~95 %) made the projection of 1 s 2.5x faster than whole-bank row chunks;
# each product costs a few µs of call overhead, so the blocks are as large as one clip allows (1 s: 3 blocks, not 4).
BLAS_ONE_THREAD_MNK = 262144
MIN_BANK_BLOCK = 1024
MAX_FOLDED_MEAN = 40.0  # |log-mel mean| up to which the mean is folded into the mel bank (see _MelPlan),
MIN_FOLDED_FLOOR = 1e-30  # if the floor stays a normal float32 (min ~1.2e-38) well above underflow after it


def bank_blocks(bank: np.ndarray, budget: int) -> list[tuple[slice, slice, np.ndarray]]:
    """The mel bank (bins x filters; each filter non-zero over one run of bins) as (bins, filters, block) of
    neighbouring filters and the bins they span, each block at most `budget` entries (one filter wider than that is
    a block of its own); the projection onto the blocks equals the whole bank's (the rest is zeros)."""
    spans, reach = [], 0
    for column in bank.T:
        nonzero = np.flatnonzero(column)
        lo, hi = (int(nonzero[0]), int(nonzero[-1]) + 1) if len(nonzero) else (reach, reach)  # an empty filter: no bins
        spans.append((lo, hi))
        reach = max(reach, hi)
    blocks, first = [], 0
    while first < len(spans):
        (lo, hi), last = spans[first], first + 1
        while last < len(spans) and (max(hi, spans[last][1]) - min(lo, spans[last][0])) * (last + 1 - first) <= budget:
            lo, hi, last = min(lo, spans[last][0]), max(hi, spans[last][1]), last + 1
        blocks.append((slice(lo, hi), slice(first, last), np.ascontiguousarray(bank[lo:hi, first:last])))
        first = last
    return blocks


class _MelPlan:
    """What the log-mel of one `AudioSpec` needs, computed once: the window, the mel bank laid out for the DFT in use
    (for OpenCV's packed real DFT, re and im rows both map to their bin's filters, so the power spectrum is never
    assembled), its non-zero blocks and the frames per product, the normalisation constants."""

    def __init__(self, spec: AudioSpec, cv2) -> None:
        self.n_fft, self.win_length, self.n_mels = spec.n_fft, spec.win_length, spec.n_mels
        self.window = np.hanning(spec.win_length + 1)[:-1].astype(np.float32)  # periodic Hann
        bank = mel_filterbank(spec.sample_rate, spec.n_fft, spec.n_mels, spec.fmin, spec.fmax)
        self.cv2 = cv2 if spec.n_fft % 2 == 0 else None
        # up to a clip's frames, OpenCV windows them straight into the work rows, one multiply per hop-wide piece of the
        # window: piece j of frame i is samples (i + j) * hop onwards, so each piece of every frame is a matrix whose
        # rows do not overlap, which OpenCV reads in place (the frames' own view overlaps: OpenCV may not read it). The
        # same float32 products as numpy's broadcast multiply; 1 s after an inference call: 12.2 -> 11.2 µs against
        # copying the frames into the rows and multiplying them there by the whole window (numpy alone: ~16).
        hop, win = spec.hop_length, spec.win_length
        self.pieces = [(slice(j, min(j + hop, win)), np.ascontiguousarray(np.broadcast_to(self.window[j : j + hop], (spec.frames, min(j + hop, win) - j))))
                       for j in range(0, win, hop)] if self.cv2 else []  # fmt: skip
        if self.cv2 is not None:  # CCS layout of a real DFT row: re0, re1, im1, re2, im2, ..., re(n/2)
            n = spec.n_fft
            self.bank = np.zeros((n, spec.n_mels), np.float32)
            self.bank[0], self.bank[n - 1] = bank[0], bank[n // 2]
            self.bank[1 : n - 1 : 2] = self.bank[2 : n - 1 : 2] = bank[1 : n // 2]
        else:
            self.bank = bank
        # log(x * gain) = log(x) - mean: the normalisation's shift folded into the bank and floor (one numpy call fewer
        # per log-mel), where exp(-mean) keeps every power well inside float32; else subtracted after the log
        gain = math.exp(-spec.mean)
        if abs(spec.mean) > MAX_FOLDED_MEAN or spec.log_floor * gain < MIN_FOLDED_FLOOR:
            gain = 1.0
        self.shift = np.float32(0.0 if gain != 1.0 else spec.mean)
        self.bank = (self.bank * np.float32(gain)).astype(np.float32)
        self.budget = max(MIN_BANK_BLOCK, BLAS_ONE_THREAD_MNK // max(1, spec.frames))
        self.blocks = bank_blocks(self.bank, self.budget)
        self.blocks_t = [(bins, filters, np.ascontiguousarray(block.T)) for bins, filters, block in self.blocks]
        self.rows = max(1, BLAS_ONE_THREAD_MNK // max(1, *(block.size for *_, block in self.blocks)))
        self.floor, self.scale = np.float32(spec.log_floor * gain), np.float32(1 / spec.std)

    def _window(self, frames: np.ndarray, work: "_MelRows") -> None:
        """The windowed frames into the first win_length columns of the work rows."""
        if work.pieces and frames.dtype == np.float32:
            rows = frames.reshape(len(work.padded), self.win_length)  # one clip's frames (a view), or whole frames
            if rows.strides[1] == rows.itemsize and rows.strides[0] >= rows.itemsize * work.pieces[0][1].shape[1]:
                for cols, weights, into in work.pieces:  # OpenCV ROIs of the work array, written in place
                    self.cv2.multiply(rows[:, cols], weights, dst=into)
                return
        np.multiply(frames, self.window, out=work.padded.reshape(*frames.shape[:-1], self.n_fft)[..., : self.win_length])  # (no copy of the frames)

    def __call__(self, frames: np.ndarray, out: np.ndarray | None = None, energies: np.ndarray | None = None) -> np.ndarray:
        """(..., F, win_length) float32 frames → (..., F, n_mels) log-mel; with `out` (C-contiguous float32
        (..., n_mels, F): the model's layout) written there transposed, by products of the transposed bank blocks
        (BLAS reads the squares transposed; no copy), and the energies the log is taken of, exp(out * std), kept in
        `energies` when given (C-contiguous, out's shape): the speech gate reads them."""
        lead = frames.shape[:-1]
        if not math.prod(lead):
            return np.zeros((*lead, self.n_mels), np.float32) if out is None else out
        n_frames = lead[-1]
        work = _MelRows.of(self, math.prod(lead), n_frames)
        self._window(frames, work)
        if self.cv2 is not None:
            squares = self.cv2.dft(work.padded, work.padded, flags=self.cv2.DFT_ROWS)  # in place: half the memory touched, ~5 µs less
            np.square(squares, out=squares)
        else:
            rfft = np.fft.rfft(work.padded, axis=-1)
            squares = (rfft.real**2 + rfft.imag**2).astype(np.float32)
        in_rows = squares is work.padded
        squares = squares.reshape(-1, n_frames, squares.shape[-1])  # (clips, F, n) so every clip is cut the same way
        # per clip: numpy multiplies each clip of the stack on its own, so a clip's answer never depends on the batch it
        # came in (BLAS sums a different M tail in a different order)
        if out is None:
            mel = kept = np.empty((*squares.shape[:2], self.n_mels), np.float32)
            if n_frames * self.bank.size <= BLAS_ONE_THREAD_MNK:  # a few frames (the live front-end's new hops): one product
                np.matmul(squares, self.bank, out=mel)
            else:
                for start in range(0, n_frames, self.rows):
                    part = slice(start, start + self.rows)
                    for bins, filters, block in self.blocks:
                        np.matmul(squares[:, part, bins], block, out=mel[:, part, filters])
        else:
            mel = out.reshape(-1, self.n_mels, n_frames)
            kept = mel if energies is None else energies.reshape(mel.shape)  # the products' buffer (the same calls either way)
            for block, read, filters, part in work.products(squares, in_rows):
                np.matmul(block, read, out=kept[:, filters, part])
        np.add(kept, self.floor, out=kept)
        np.log(kept, out=mel)  # the bank and floor carry exp(-mean): log(mel + floor) - mean
        if self.shift:  # the mean is not folded into the bank: subtracted here (and taken out of the energies)
            np.subtract(mel, self.shift, out=mel)
            if energies is not None:
                np.multiply(kept, np.float32(math.exp(-self.shift)), out=kept)
        np.multiply(mel, self.scale, out=mel)
        return mel.reshape(*lead, self.n_mels) if out is None else out


class _MelRows:
    """The work rows of `count` frames (clips of `n_frames`) for one plan — zero-padded at the end: see mel_frames —
    with the views of them every call takes: where each piece of the window goes and, for OpenCV's DFT (in place in
    them), what each bank block reads. A thread keeps its last one, rows and views (`scratch` holds the rows: 1 s
    after an inference call, the log-mel ~5 µs faster than taking the views each call); rows `scratch` does not keep
    are fresh zeros each call."""

    _last = threading.local()

    def __init__(self, plan: _MelPlan, count: int, n_frames: int) -> None:
        self.plan, self.count, self.n_frames = plan, count, n_frames
        rows = scratch("mel-frames", (count, plan.n_fft))
        self.kept = rows is not None
        self.padded = rows if self.kept else np.zeros((count, plan.n_fft), np.float32)
        self.tail = self.padded[:, plan.win_length :]
        if self.kept:
            self.tail.fill(0)
        fits = plan.pieces and count <= len(plan.pieces[0][1])  # up to a clip's frames
        self.pieces = [(cols, weights[:count], self.padded[:, cols]) for cols, weights in plan.pieces] if fits else []
        self._products: list | None = None

    @classmethod
    def of(cls, plan: _MelPlan, count: int, n_frames: int) -> "_MelRows":
        """This thread's rows for `count` frames of `plan`: its last ones when they fit, their zero padding restored."""
        work = getattr(cls._last, "rows", None)
        if work is None or work.plan is not plan or work.count != count or work.n_frames != n_frames:
            work = cls(plan, count, n_frames)
            if work.kept:
                cls._last.rows = work
        else:
            work.tail.fill(0)  # the DFT ran in place
        return work

    def products(self, squares: np.ndarray, in_rows: bool) -> list[tuple[np.ndarray, np.ndarray, slice, slice]]:
        """(transposed bank block, the squares it reads, its filters, its frames) of each product, over `squares`
        (clips, F, n); the views are kept when the squares are in these rows (`in_rows`: OpenCV's in-place DFT)."""
        if in_rows and self._products is not None:
            return self._products
        rows = self.plan.rows
        products = [(block, squares[:, part, bins].swapaxes(-1, -2), filters, part)
                    for part in (slice(start, start + rows) for start in range(0, self.n_frames, rows)) for bins, filters, block in self.plan.blocks_t]  # fmt: skip
        if in_rows:
            self._products = products
        return products


@lru_cache(maxsize=8)
def _mel_plan(spec: AudioSpec, cv2) -> _MelPlan:
    return _MelPlan(spec, cv2)


def mel_frames(frames: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """Normalised log-mel of (..., F, win_length) float32 frames → (..., F, n_mels) float32: the one feature
    computation behind `log_mel` (whole clips) and the live stream's incremental front-end.

    Each windowed frame is zero-padded to n_fft at its end: a circular shift of where the padding goes changes only
    the phase, so the power is that of the centred padding torch.stft uses. The DFT is OpenCV's row-wise real DFT
    when OpenCV is installed (about 10x numpy's pocketfft at these sizes), numpy's otherwise: equal to float
    rounding (tested)."""
    return _mel_plan(spec, _opencv())(frames)


def clip_frames(clips: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """(..., samples) → (..., frames, win_length) read-only view: frame i starts at sample i * hop_length.
    (`np.ndarray` over the clips' memory: one call, where `as_strided` takes ~10 in Python — it runs per live answer.)"""
    step = clips.strides[-1]
    count = max(0, 1 + (clips.shape[-1] - spec.win_length) // spec.hop_length)
    shape, strides = (*clips.shape[:-1], count, spec.win_length), (*clips.strides[:-1], step * spec.hop_length, step)
    if clips.flags.c_contiguous and clips.size:
        frames = np.ndarray(shape, clips.dtype, clips, 0, strides)
        frames.flags.writeable = False
        return frames
    return np.lib.stride_tricks.as_strided(clips, shape, strides, writeable=False)


def _check_energies(energies: np.ndarray | None, shape: tuple[int, ...]) -> None:
    if energies is not None and (energies.shape != shape or energies.dtype != np.float32 or not energies.flags.c_contiguous):
        raise InputError(f"log-mel: energies must be C-contiguous float32 {shape}, got {energies.dtype} {energies.shape}")


def log_mel(clips: np.ndarray, spec: AudioSpec, out: np.ndarray | None = None, energies: np.ndarray | None = None) -> np.ndarray:
    """Normalised log-mel of float32 clips (B, clip_samples) → (B, 1, n_mels, frames), written into `out` when given
    (float32 of that shape: e.g. the model's batch tensor, one copy fewer); `energies` (C-contiguous float32, the
    same shape) receives what the log is taken of, exp(log-mel * std)."""
    frames = clip_frames(np.asarray(clips, np.float32), spec)
    shape = (*frames.shape[:-2], 1, spec.n_mels, frames.shape[-2])
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise InputError(f"log-mel: out must be float32 {shape}, got {out.dtype} {out.shape}")
    _check_energies(energies, shape)
    if not out.flags.c_contiguous:
        np.copyto(out, log_mel(clips, spec, None, energies))
        return out
    _mel_plan(spec, _opencv())(frames, out, energies)
    return out


def prepare_clip(audio: np.ndarray, sample_rate: int, spec: AudioSpec, name: str = "audio") -> np.ndarray:
    """Raw audio (any rate, mono or multi-channel) → float32 mono clip of `spec.clip_samples` (float32 mono audio at
    the model's rate may come back as a view of the input)."""
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise InputError(f"{name}: sample rate must be a positive integer, got {sample_rate!r}")
    mono = to_mono_float(audio, name)
    return fit_length(resample(mono, int(sample_rate), spec.sample_rate), spec.clip_samples, spec.fit)


def preprocess_audio(
    audio: np.ndarray, sample_rate: int, spec: AudioSpec, name: str = "audio", out: np.ndarray | None = None, energies: np.ndarray | None = None
) -> np.ndarray:
    """Raw audio → the model's float32 tensor: (1, n_mels, frames) log-mel, or the (1, clip_samples) waveform,
    written into `out` when given (a float32 array of that shape). Never the caller's memory. `energies`: for a
    log-mel, a C-contiguous float32 array of its shape to receive what the log is taken of (see `log_mel`)."""
    if out is not None and (out.shape != spec.shape or out.dtype != np.float32):
        raise InputError(f"{name}: out must be float32 {spec.shape}, got {out.dtype} {out.shape}")
    clip = prepare_clip(audio, sample_rate, spec, name)
    if spec.features != "log-mel":
        if out is None:
            return clip[None].copy()
        out[0] = clip
        return out
    if out is None:
        out = np.empty(spec.shape, np.float32)
    if out.flags.c_contiguous:  # the clip's frames straight into `out`: log_mel's work in fewer steps
        _check_energies(energies, spec.shape)
        _mel_plan(spec, _opencv())(clip_frames(clip, spec), out, energies)
    else:
        log_mel(clip[None], spec, out[None], None if energies is None else energies[None])
    return out

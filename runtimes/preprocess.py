"""Numpy preprocessing shared by training, calibration and every device: one implementation.

Image: grey/colour conversion, centre square crop, resize, scale, normalise, CHW layout.
Audio: int16/float mono mix-down, resampling, fixed-length window, log-mel spectrogram.
The parameters are data (`ImageSpec`, `AudioSpec`) recorded in the bundle manifest.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import lru_cache
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

    @property
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

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate * self.clip_seconds))

    @property
    def frames(self) -> int:
        return 1 + (self.clip_samples - self.win_length) // self.hop_length

    @property
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


def _center_square(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


def _resize_axis(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Resize one axis: box-filter down by the integer factor, then linear with half-pixel centres."""
    n = x.shape[axis]
    factor = n // size
    if factor >= 2:
        n_keep = factor * size if n % size == 0 else n - n % factor
        x = np.take(x, np.arange(n_keep), axis=axis)
        shape = list(x.shape)
        shape[axis : axis + 1] = [n_keep // factor, factor]
        x = x.reshape(shape).mean(axis=axis + 1)
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


def preprocess_image(image: np.ndarray, spec: ImageSpec, color_order: str = "RGB", name: str = "image") -> np.ndarray:
    """Turn one uint8 HxW or HxWx3 frame (in `color_order`) into a float32 (C, H, W) tensor."""
    image = _check_image(image, name)
    if color_order not in _LUMA:
        raise InputError(f"{name}: colour order must be RGB or BGR, got {color_order!r}")
    x = image.astype(np.float32)
    if x.ndim == 3:
        x = x[:, :, :3]
        if spec.channels == 1:
            x = x @ np.asarray(_LUMA[color_order], np.float32)
        elif color_order != spec.color_order:
            x = x[:, :, ::-1]
    elif spec.channels == 3:
        x = np.repeat(x[:, :, None], 3, axis=2)
    if spec.crop == "center":
        x = _center_square(x)
    x = _resize_axis(_resize_axis(x, spec.height, 0), spec.width, 1)
    x = x * np.float32(1 / 255)
    if x.ndim == 2:
        x = x[None]
    else:
        x = np.ascontiguousarray(x.transpose(2, 0, 1))
    mean = np.asarray(spec.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(-1, 1, 1)
    return ((x - mean) / std).astype(np.float32)


# ----------------------------------------------------------------------------- audio


def to_mono_float(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """int16/int32/float PCM, mono (N,) or multi-channel (N, C) → float32 mono in [-1, 1]."""
    if not isinstance(audio, np.ndarray):
        raise InputError(f"{name}: expected a numpy array, got {type(audio).__name__}")
    if audio.ndim not in (1, 2):
        raise InputError(f"{name}: expected (samples,) or (samples, channels), got shape {audio.shape}")
    if audio.size == 0:
        raise InputError(f"{name}: audio is empty")
    if audio.dtype == np.int16:
        x = audio.astype(np.float32) / 32768.0
    elif audio.dtype == np.int32:
        x = (audio / 2147483648.0).astype(np.float32)
    elif audio.dtype.kind == "f":
        if not np.isfinite(audio).all():
            raise InputError(f"{name}: audio contains NaN or inf")
        x = audio.astype(np.float32)
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


@lru_cache(maxsize=8)
def _window(win_length: int, n_fft: int) -> np.ndarray:
    window = np.zeros(n_fft, np.float32)
    offset = (n_fft - win_length) // 2
    window[offset : offset + win_length] = np.hanning(win_length + 1)[:-1]
    return window


def log_mel(clips: np.ndarray, spec: AudioSpec) -> np.ndarray:
    """Normalised log-mel of float32 clips (B, clip_samples) → (B, 1, n_mels, frames)."""
    frames = np.lib.stride_tricks.sliding_window_view(clips, spec.win_length, axis=-1)[..., :: spec.hop_length, :]
    pad = (spec.n_fft - spec.win_length) // 2
    frames = np.pad(frames, [(0, 0)] * (frames.ndim - 1) + [(pad, spec.n_fft - spec.win_length - pad)])
    power = np.abs(np.fft.rfft(frames * _window(spec.win_length, spec.n_fft), axis=-1)) ** 2
    mel = power.astype(np.float32) @ mel_filterbank(spec.sample_rate, spec.n_fft, spec.n_mels, spec.fmin, spec.fmax)
    feats = (np.log(mel + spec.log_floor) - spec.mean) / spec.std
    return np.ascontiguousarray(np.swapaxes(feats, -1, -2)[:, None]).astype(np.float32)


def prepare_clip(audio: np.ndarray, sample_rate: int, spec: AudioSpec, name: str = "audio") -> np.ndarray:
    """Raw audio (any rate, mono or multi-channel) → float32 mono clip of `spec.clip_samples`."""
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise InputError(f"{name}: sample rate must be a positive integer, got {sample_rate!r}")
    mono = to_mono_float(audio, name)
    return fit_length(resample(mono, int(sample_rate), spec.sample_rate), spec.clip_samples, spec.fit)


def preprocess_audio(audio: np.ndarray, sample_rate: int, spec: AudioSpec, name: str = "audio") -> np.ndarray:
    """Raw audio → the model's float32 tensor: (1, n_mels, frames) log-mel, or the (1, clip_samples) waveform."""
    clip = prepare_clip(audio, sample_rate, spec, name)
    return log_mel(clip[None], spec)[0] if spec.features == "log-mel" else clip[None]

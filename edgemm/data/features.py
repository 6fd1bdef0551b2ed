"""Model tensors from raw data-set samples, computed by the runtime's own preprocessing functions."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgemm.runtimes.preprocess import (
    AudioSpec,
    ImageSpec,
    log_mel,
    prepare_clip,
    preprocess_image,
)

from .avdigits import SAMPLE_RATE, Split


def image_tensors(images: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """(N, H, W[, 3]) uint8 → (N, C, H, W) float32, one `preprocess_image` call per frame."""
    return np.stack([preprocess_image(img, spec) for img in images]) if len(images) else np.zeros((0, *spec.shape), np.float32)


def audio_tensors(audio: np.ndarray, spec: AudioSpec, sample_rate: int = SAMPLE_RATE, chunk: int = 256) -> np.ndarray:
    """(N, samples) raw clips → (N, 1, n_mels, frames) float32 log-mel, in chunks to bound memory."""
    out = np.zeros((len(audio), *spec.shape), np.float32)
    for start in range(0, len(audio), chunk):
        clips = np.stack([prepare_clip(a, sample_rate, spec) for a in audio[start : start + chunk]])
        out[start : start + chunk] = log_mel(clips, spec)
    return out


def fit_audio_norm(audio: np.ndarray, spec: AudioSpec, max_clips: int = 1000) -> AudioSpec:
    """`spec` with the log-mel mean/std measured on (up to `max_clips` of) training clips."""
    raw = audio_tensors(audio[:max_clips], replace(spec, mean=0.0, std=1.0))
    return replace(spec, mean=round(float(raw.mean()), 5), std=round(float(raw.std()), 5))


def split_tensors(split: Split, image_spec: ImageSpec, audio_spec: AudioSpec) -> tuple[np.ndarray, np.ndarray]:
    """Image and audio tensors for every sample of a split."""
    return image_tensors(split.images, image_spec), audio_tensors(split.audio, audio_spec)

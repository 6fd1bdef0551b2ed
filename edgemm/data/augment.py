"""Corruptions that make each modality ambiguous on part of the data (seeded, numpy only)."""
from __future__ import annotations

import numpy as np

from edgemm.runtimes.preprocess import fit_length, resample

from .speech_augment import babble


def shift_image(image: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    """Translate by up to `max_shift` pixels, filling with black."""
    dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    return out


def occlude(image: np.ndarray, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Cover a random square of side in `size` (inclusive) with a flat grey level."""
    side = int(rng.integers(size[0], size[1] + 1))
    top, left = rng.integers(0, image.shape[0] - side + 1), rng.integers(0, image.shape[1] - side + 1)
    out = image.copy()
    out[top : top + side, left : left + side] = rng.integers(0, 256)
    return out


def add_pixel_noise(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian sensor noise with standard deviation `sigma` grey levels."""
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


def corrupt_image(image: np.ndarray, rng: np.random.Generator, heavy: bool, distractor: np.ndarray) -> np.ndarray:
    """Light: shift, noise, sometimes a small occluder. Heavy: a second digit on top or a large occluder."""
    out = shift_image(image, rng)
    if heavy:
        if rng.random() < 0.5:
            out = np.maximum(out, shift_image(distractor, rng, 3))
        else:
            out = occlude(out, rng, (17, 21))
        return add_pixel_noise(out, rng, rng.uniform(40, 80))
    if rng.random() < 0.3:
        out = occlude(out, rng, (5, 9))
    return add_pixel_noise(out, rng, rng.uniform(5, 35))


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink or brown noise, unit RMS."""
    colour = rng.integers(0, 3)
    white = rng.normal(0, 1, n)
    if colour:
        spectrum = np.fft.rfft(white)
        freqs = np.maximum(np.arange(len(spectrum)), 1)
        white = np.fft.irfft(spectrum / freqs ** (0.5 * colour), n)
    return white / (np.sqrt(np.mean(white**2)) + 1e-12)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)) + 1e-12)


def place(word: np.ndarray, n: int, rng: np.random.Generator, speed: float) -> np.ndarray:
    """Speed-perturb a word and put it at a random offset inside an `n`-sample window."""
    word = resample(word, 1000, int(round(1000 / speed)))
    if len(word) >= n:
        return fit_length(word, n, "center")
    start = int(rng.integers(0, n - len(word) + 1))
    out = np.zeros(n, np.float32)
    out[start : start + len(word)] = word
    return out


def corrupt_audio(word: np.ndarray, n: int, rng: np.random.Generator, heavy: bool, distractor: np.ndarray, augment=None, talkers=None) -> np.ndarray:
    """Light: shift, speed, gain, noise at 0–20 dB SNR. Heavy: a louder other digit and noise at −6–3 dB.
    With a `SpeechAugment` (training): tempo or pitch, a room and a microphone, babble of `talkers` (other words)
    at 5–20 dB below the word on part of the light clips, clipping."""
    if augment is not None:
        word = augment.word(word)
    target = place(word, n, rng, rng.uniform(0.85, 1.15))
    if heavy:
        other = place(distractor, n, rng, rng.uniform(0.85, 1.15))
        target = target + other * (_rms(target) / _rms(other)) * 10 ** (rng.uniform(0, 6) / 20)
        snr_db = rng.uniform(-6, 3)
    else:
        snr_db = rng.uniform(0, 20)
        if talkers is not None and rng.random() < 0.3:
            crowd = babble(talkers, n, rng)
            target = target + crowd * (_rms(target) / _rms(crowd)) * 10 ** (-rng.uniform(5, 20) / 20)
    if augment is not None:
        target = augment.room(target.astype(np.float32))
    mix = target + _noise(n, rng) * _rms(target) * 10 ** (-snr_db / 20)
    gain = 10 ** (rng.uniform(-18, 0) / 20) / (np.abs(mix).max() + 1e-9)
    mix = (mix * gain).astype(np.float32)
    return augment.clip(mix) if augment is not None else mix

"""Training-time speech augmentation, so the audio branch hears more than clean espeak-ng in a quiet box.

Tempo and pitch of the word (audiomentations: signalsmith-stretch), rooms (impulse responses of random shoebox rooms,
image-source method by pyroomacoustics, applied by audiomentations), microphones (band-limiting, EQ), babble made
of other utterances, clipping. The speed perturbation, time shift, coloured noise and gain of every split stay in
`augment.corrupt_audio`; vocal-tract-length perturbation and SpecAugment act on the features while training
(`edgemm.train`). All of it is in the `data` extra and seeded; the runtime never imports it.
"""
from __future__ import annotations

import random
from functools import partial
from pathlib import Path

import numpy as np

RATE = 16000


def room_impulses(folder: Path, count: int, seed: int, rate: int = RATE) -> list[Path]:
    """`count` impulse responses of random rooms (3x3x2.4 to 10x8x3.5 m, RT60 0.15–0.9 s, source and microphone
    anywhere inside) as WAV files in `folder` (made once); their paths."""
    import pyroomacoustics as pra
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"rir-{i:03d}.wav" for i in range(count)]
    if all(p.is_file() for p in paths):
        return paths
    rng = np.random.default_rng(seed)
    for path in paths:
        dims = rng.uniform([3.0, 3.0, 2.4], [10.0, 8.0, 3.5])
        absorption, order = pra.inverse_sabine(rng.uniform(0.15, 0.9), dims)
        room = pra.ShoeBox(dims, fs=rate, materials=pra.Material(absorption), max_order=min(order, 17))
        room.add_source(rng.uniform(0.3, dims - 0.3))
        room.add_microphone(rng.uniform(0.3, dims - 0.3))
        room.compute_rir()
        ir = np.asarray(room.rir[0][0], np.float32)
        soundfile.write(path.with_suffix(".tmp.wav"), ir / np.abs(ir).max(), rate, subtype="FLOAT")
        path.with_suffix(".tmp.wav").replace(path)
    return paths


def babble(words: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Three to six other utterances at random offsets and levels over `n` samples: a room of talkers."""
    out = np.zeros(n, np.float32)
    for _ in range(int(rng.integers(3, 7))):
        word = words[rng.integers(len(words))][:n]
        start = int(rng.integers(0, n - len(word) + 1))
        out[start : start + len(word)] += word * np.float32(10 ** (rng.uniform(-10, 0) / 20) / (np.abs(word).max() + 1e-9))
    return out


class SpeechAugment:
    """The waveform augmentations of training clips: `word` (tempo or pitch), `room` (reverberation, microphone band
    and EQ) and `clip` (clipping distortion after the gain). Seeded: audiomentations draws from Python's and numpy's
    global generators, which this seeds."""

    def __init__(self, impulses: list[Path], seed: int) -> None:
        import audiomentations as am

        random.seed(seed)
        np.random.seed(seed % 2**32)
        self.word = partial(am.OneOf([am.TimeStretch(0.75, 1.3, leave_length_unchanged=False, p=1.0), am.PitchShift(-4, 4, p=1.0)], p=0.6), sample_rate=RATE)
        self.room = partial(am.Compose([
            am.ApplyImpulseResponse(impulses, p=0.4),
            am.OneOf([am.BandPassFilter(300, 2500, p=1.0), am.LowPassFilter(2500, 7500, p=1.0), am.HighPassFilter(80, 500, p=1.0)], p=0.4),
            am.SevenBandParametricEQ(-9, 9, p=0.3),
        ]), sample_rate=RATE)  # fmt: skip
        self.clip = partial(am.ClippingDistortion(0, 30, p=0.1), sample_rate=RATE)

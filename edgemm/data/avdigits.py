"""`av-digits`: real MNIST digits paired with spoken digits synthesised offline, each modality
corrupted so that it alone is ambiguous on part of the data and fusion pays.

Deterministic from a seed; cached on disk (``$EDGEMM_CACHE`` or ``~/.cache/edgemm``); train/val/test
splits use disjoint source images and disjoint voices.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgemm.runtimes.paths import cache_root
from edgemm.runtimes.preprocess import resample

from .augment import corrupt_audio, corrupt_image
from .mnist import load_mnist_5k
from .speech import DIGIT_WORDS, Voice, synthesize_fresh

DATA_VERSION = 2  # 2: speech said in a fresh process per split (v1 depended on what the process had said before)
SPLITS = ("train", "val", "test")
SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
LABELS = [str(d) for d in range(10)]

VOICE_BASES = (
    "gmw/en", "gmw/en-US", "gmw/en-GB-x-rp", "gmw/en-029",
    "gmw/en-GB-scotland", "gmw/en-GB-x-gbclan", "gmw/en-GB-x-gbcwmd", "gmw/en-US-nyc",
)  # fmt: skip
VOICE_VARIANTS = ("", "+f1", "+f2", "+f3", "+f4", "+f5", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7",
                  "+klatt", "+klatt2", "+klatt3", "+whisperf", "+croak", "+quincy", "+linda")  # fmt: skip


@dataclass(frozen=True)
class AVDigitsConfig:
    """Everything that determines the data set; its hash names the cache folder."""

    seed: int = 0
    per_class: int = 500  # source images per class used (<= 500)
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    pairings: int = 2  # samples made from each source image
    prosodies: int = 2  # rate/pitch/range draws per voice and digit
    heavy_image: float = 0.3  # fraction of samples whose image is made ambiguous
    heavy_audio: float = 0.3  # fraction whose audio is made ambiguous (never both)

    def key(self) -> str:
        blob = json.dumps({"version": DATA_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class Split:
    """One split: raw inputs as a device would capture them, labels and how each sample was corrupted."""

    images: np.ndarray  # (N, 28, 28) uint8
    audio: np.ndarray  # (N, 16000) int16 at 16 kHz
    labels: np.ndarray  # (N,) int64
    heavy_image: np.ndarray  # (N,) bool
    heavy_audio: np.ndarray  # (N,) bool
    source: np.ndarray  # (N,) MNIST index of the image
    voice: np.ndarray  # (N,) voice id of the speech

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> "Split":
        return Split(**{k: v[index] for k, v in vars(self).items()})


def config_from_record(data: dict) -> AVDigitsConfig:
    """The data-set config recorded in a checkpoint's `data` entry (defaults where absent)."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "name"}
    return AVDigitsConfig(**fields)


def _split_indices(labels: np.ndarray, config: AVDigitsConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Disjoint, class-stratified source-image indices per split."""
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))[: config.per_class]
        n_train = int(round(len(idx) * config.split_fractions[0]))
        n_val = int(round(len(idx) * config.split_fractions[1]))
        for name, chunk in zip(SPLITS, np.split(idx, [n_train, n_train + n_val])):
            parts[name].append(chunk)
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def _voices(rng: np.random.Generator, config: AVDigitsConfig) -> dict[str, list[str]]:
    """Disjoint voice ids per split."""
    voices = [b + v for b in VOICE_BASES for v in VOICE_VARIANTS]
    voices = [voices[i] for i in rng.permutation(len(voices))]
    n_train = int(round(len(voices) * config.split_fractions[0]))
    n_val = int(round(len(voices) * config.split_fractions[1]))
    return {"train": voices[:n_train], "val": voices[n_train : n_train + n_val], "test": voices[n_train + n_val :]}


def _prosodies(voices: list[str], config: AVDigitsConfig, rng: np.random.Generator) -> list[tuple[str, Voice]]:
    """(word, voice) for every voice, digit and prosody draw, digit-major within each voice."""
    return [
        (word, Voice(name, int(rng.integers(110, 230)), int(rng.integers(15, 85)), int(rng.integers(10, 90))))
        for name in voices
        for word in DIGIT_WORDS
        for _ in range(config.prosodies)
    ]


def _speech_pool(requests: list[tuple[str, Voice]], rate: int, clips: list[np.ndarray]) -> list[list[tuple[str, np.ndarray]]]:
    """Per digit: (voice id, float32 16 kHz trimmed word) for every request."""
    pool: list[list[tuple[str, np.ndarray]]] = [[] for _ in range(10)]
    for (word, voice), clip in zip(requests, clips):
        pcm = clip.astype(np.float32) / 32768.0
        loud = np.flatnonzero(np.abs(pcm) > 0.02 * (np.abs(pcm).max() + 1e-9))
        if loud.size:
            pcm = pcm[loud[0] : loud[-1] + 1]
        pool[DIGIT_WORDS.index(word)].append((voice.name, resample(pcm, rate, SAMPLE_RATE)))
    return pool


def _make_split(
    name: str, sources: np.ndarray, images: np.ndarray, labels: np.ndarray, pool, config: AVDigitsConfig, rng
) -> Split:
    n = len(sources) * config.pairings
    out = Split(
        images=np.zeros((n, 28, 28), np.uint8),
        audio=np.zeros((n, CLIP_SAMPLES), np.int16),
        labels=np.zeros(n, np.int64),
        heavy_image=np.zeros(n, bool),
        heavy_audio=np.zeros(n, bool),
        source=np.zeros(n, np.int64),
        voice=np.zeros(n, dtype="<U32"),
    )
    order = np.repeat(sources, config.pairings)
    for i, src in enumerate(tqdm(order, desc=f"av-digits {name}", unit="sample", leave=False)):
        digit = int(labels[src])
        other = int((digit + rng.integers(1, 10)) % 10)
        u = rng.random()
        heavy_img, heavy_aud = u < config.heavy_image, config.heavy_image <= u < config.heavy_image + config.heavy_audio
        distractor_img = images[rng.choice(sources[labels[sources] == other])]
        voice, word = pool[digit][rng.integers(len(pool[digit]))]
        _, distractor_word = pool[other][rng.integers(len(pool[other]))]
        out.images[i] = corrupt_image(images[src], rng, heavy_img, distractor_img)
        clip = corrupt_audio(word, CLIP_SAMPLES, rng, heavy_aud, distractor_word)
        out.audio[i] = np.round(np.clip(clip, -1, 1) * 32767).astype(np.int16)
        out.labels[i], out.heavy_image[i], out.heavy_audio[i] = digit, heavy_img, heavy_aud
        out.source[i], out.voice[i] = src, voice
    return out


def _save(path: Path, split: Split) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
        np.savez(tmp, **vars(split))
    os.replace(tmp.name, path)


def build(config: AVDigitsConfig = AVDigitsConfig(), root: Path | None = None) -> Path:
    """Make (or find) the cached data set for `config`; returns its folder."""
    folder = (root or cache_root()) / f"av-digits-v{DATA_VERSION}-{config.key()}"
    if all((folder / f"{s}.npz").is_file() for s in SPLITS):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    images, labels = load_mnist_5k()
    sources = _split_indices(labels, config, rng)
    voices = _voices(rng, config)
    requests = [_prosodies(voices[name], config, rng) for name in SPLITS]
    speech = synthesize_fresh(requests)
    for name, asked, (rate, clips) in zip(SPLITS, requests, speech):
        pool = _speech_pool(asked, rate, clips)
        split = _make_split(name, sources[name], images, labels, pool, config, rng)
        _save(folder / f"{name}.npz", split)
    meta = {"config": asdict(config), "version": DATA_VERSION, "voices": voices, "sizes": {s: len(sources[s]) * config.pairings for s in SPLITS}}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return folder


def load_split(name: str, config: AVDigitsConfig = AVDigitsConfig(), root: Path | None = None) -> Split:
    """One split of the data set, built on first use."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; one of {SPLITS}")
    with np.load(build(config, root) / f"{name}.npz") as data:
        return Split(**{k: data[k] for k in data.files})

"""`av-digits`: real MNIST digits paired with spoken digits synthesised offline, each modality
corrupted so that it alone is ambiguous on part of the data and fusion pays.

Deterministic from a seed; cached on disk (``$EDGEMM_CACHE`` or ``~/.cache/edgemm``); train/val/test
splits use disjoint source images and disjoint voices, drawn from every espeak-ng English dialect and voice
variant except the held-out families (`voices.py`), whose clean clips make the `heldout` split. Training clips
are also augmented (`speech_augment.py`); val and test keep the same corruption recipe as before.
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

from .augment import corrupt_audio, corrupt_image, place
from .mnist import load_mnist_5k
from .speech import DIGIT_WORDS, Voice, synthesize_fresh
from .speech_augment import SpeechAugment, room_impulses
from .voices import TEXTS, voice_splits

DATA_VERSION = 3  # 3: every voice variant, held-out families, intonation, training augmentation; 2: speech said in a
SPLITS = ("train", "val", "test", "heldout")  # fresh process per split (v1 depended on what the process had said)
SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
LABELS = [str(d) for d in range(10)]



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
    augment: bool = True  # training clips: tempo/pitch, rooms, microphones, babble, clipping (speech_augment.py)
    rooms: int = 64  # room impulse responses drawn for it

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
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS[:3]}
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))[: config.per_class]
        n_train = int(round(len(idx) * config.split_fractions[0]))
        n_val = int(round(len(idx) * config.split_fractions[1]))
        for name, chunk in zip(SPLITS[:3], np.split(idx, [n_train, n_train + n_val])):
            parts[name].append(chunk)
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


def _prosodies(voices: list[str], count: int, rng: np.random.Generator) -> list[tuple[str, Voice]]:
    """(text, voice) for every voice, digit and prosody draw (rate 80–260 words/min, pitch and range 5–95, statement,
    question or exclamation), digit-major within each voice."""
    return [
        (TEXTS[rng.integers(len(TEXTS))].format(word), Voice(name, int(rng.integers(80, 261)), int(rng.integers(5, 96)), int(rng.integers(5, 96))))
        for name in voices
        for word in DIGIT_WORDS
        for _ in range(count)
    ]


def _speech_pool(requests: list[tuple[str, Voice]], rate: int, clips: list[np.ndarray]) -> list[list[tuple[str, np.ndarray]]]:
    """Per digit: (voice id, float32 16 kHz trimmed word) for every request."""
    pool: list[list[tuple[str, np.ndarray]]] = [[] for _ in range(10)]
    for (text, voice), clip in zip(requests, clips):
        pcm = clip.astype(np.float32) / 32768.0
        loud = np.flatnonzero(np.abs(pcm) > 0.02 * (np.abs(pcm).max() + 1e-9))
        if loud.size:
            pcm = pcm[loud[0] : loud[-1] + 1]
        pool[DIGIT_WORDS.index(text.strip(".?!"))].append((voice.name, resample(pcm, rate, SAMPLE_RATE)))
    return pool


def _empty_split(n: int) -> Split:
    return Split(
        images=np.zeros((n, 28, 28), np.uint8),
        audio=np.zeros((n, CLIP_SAMPLES), np.int16),
        labels=np.zeros(n, np.int64),
        heavy_image=np.zeros(n, bool),
        heavy_audio=np.zeros(n, bool),
        source=np.zeros(n, np.int64),
        voice=np.zeros(n, dtype="<U32"),
    )


def _make_split(name: str, sources: np.ndarray, images: np.ndarray, labels: np.ndarray, pool, config: AVDigitsConfig, rng, augment=None) -> Split:
    """Each source image `pairings` times, with a word of its digit; heavy image or audio corruption on part."""
    order = np.repeat(sources, config.pairings)
    out = _empty_split(len(order))
    talkers = [w for words in pool for _, w in words] if augment is not None else None
    for i, src in enumerate(tqdm(order, desc=f"av-digits {name}", unit="sample", leave=False)):
        digit = int(labels[src])
        other = int((digit + rng.integers(1, 10)) % 10)
        u = rng.random()
        heavy_img, heavy_aud = u < config.heavy_image, config.heavy_image <= u < config.heavy_image + config.heavy_audio
        distractor_img = images[rng.choice(sources[labels[sources] == other])]
        voice, word = pool[digit][rng.integers(len(pool[digit]))]
        _, distractor_word = pool[other][rng.integers(len(pool[other]))]
        out.images[i] = corrupt_image(images[src], rng, heavy_img, distractor_img)
        clip = corrupt_audio(word, CLIP_SAMPLES, rng, heavy_aud, distractor_word, augment, talkers)
        out.audio[i] = np.round(np.clip(clip, -1, 1) * 32767).astype(np.int16)
        out.labels[i], out.heavy_image[i], out.heavy_audio[i] = digit, heavy_img, heavy_aud
        out.source[i], out.voice[i] = src, voice
    return out


def _make_heldout(sources: np.ndarray, images: np.ndarray, labels: np.ndarray, pool, rng) -> Split:
    """Every word of the held-out voices, clean (a random place in the window, a random level, no noise), each with
    a lightly corrupted test image of its digit."""
    words = [(digit, voice, word) for digit in range(10) for voice, word in pool[digit]]
    out = _empty_split(len(words))
    for i, (digit, voice, word) in enumerate(tqdm(words, desc="av-digits heldout", unit="sample", leave=False)):
        clip = place(word, CLIP_SAMPLES, rng, 1.0) * np.float32(10 ** (rng.uniform(-18, -3) / 20) / (np.abs(word).max() + 1e-9))
        out.images[i] = corrupt_image(images[rng.choice(sources[labels[sources] == digit])], rng, False, images[0])
        out.audio[i] = np.round(np.clip(clip, -1, 1) * 32767).astype(np.int16)
        out.labels[i], out.source[i], out.voice[i] = digit, -1, voice
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
    voices = voice_splits(rng, config.split_fractions)
    requests = [_prosodies(voices[name], 1 if name == "heldout" else config.prosodies, rng) for name in SPLITS]
    speech = synthesize_fresh(requests)
    augment = SpeechAugment(room_impulses(folder / "rooms", config.rooms, config.seed), config.seed) if config.augment else None
    sizes = {}
    for name, asked, (rate, clips) in zip(SPLITS, requests, speech):
        pool = _speech_pool(asked, rate, clips)
        if name == "heldout":
            split = _make_heldout(sources["test"], images, labels, pool, rng)
        else:
            split = _make_split(name, sources[name], images, labels, pool, config, rng, augment if name == "train" else None)
        _save(folder / f"{name}.npz", split)
        sizes[name] = len(split)
    meta = {"config": asdict(config), "version": DATA_VERSION, "voices": voices, "sizes": sizes}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    return folder


def load_split(name: str, config: AVDigitsConfig = AVDigitsConfig(), root: Path | None = None) -> Split:
    """One split of the data set, built on first use."""
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; one of {SPLITS}")
    with np.load(build(config, root) / f"{name}.npz") as data:
        return Split(**{k: data[k] for k in data.files})

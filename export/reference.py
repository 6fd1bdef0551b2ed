"""Held-out reference samples with a reference model's outputs (numpy only: usable on a device)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgemm.runtimes.model import MODALITY_PATTERNS

INPUT_NAMES = ("image", "audio", "present")
OUTPUT_NAMES = ("logits", "embedding")
REFERENCE_FILE = "reference.npz"  # a small copy inside the bundle, so devices can verify engines they build

Infer = Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]  # (image, audio, present) → outputs


@dataclass
class ReferenceSet:
    """Preprocessed held-out samples in every modality pattern, with a reference model's outputs on them."""

    image: np.ndarray
    audio: np.ndarray
    present: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    embedding: np.ndarray
    name: str = "torch"  # what produced the reference outputs

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def patterns(image: np.ndarray, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The samples repeated as fused, image-only and audio-only rows (absent modality zeroed)."""
        present = np.repeat(np.array(list(MODALITY_PATTERNS.values()), np.float32), len(image), axis=0)
        image = (np.tile(image, (3, 1, 1, 1)) * present[:, :1, None, None]).astype(np.float32)
        audio = (np.tile(audio, (3, 1, 1, 1)) * present[:, 1:, None, None]).astype(np.float32)
        return image, audio, present

    @classmethod
    def build(cls, infer: Infer, image: np.ndarray, audio: np.ndarray, labels: np.ndarray, name: str = "torch", batch: int = 256) -> "ReferenceSet":
        """Repeat the samples as fused, image-only and audio-only; `infer` gives the reference outputs."""
        image, audio, present = cls.patterns(image, audio)
        outs = [infer(image[s : s + batch], audio[s : s + batch], present[s : s + batch]) for s in range(0, len(present), batch)]
        logits, embedding = (np.concatenate([o[k] for o in outs]) for k in OUTPUT_NAMES)
        return cls(image, audio, present, np.tile(labels, 3), logits, embedding, name)

    def head(self, samples: int) -> "ReferenceSet":
        """The first `samples` samples, in all three patterns."""
        n = len(self) // 3
        rows = np.concatenate([np.arange(k * n, k * n + min(samples, n)) for k in range(3)])
        return ReferenceSet(*(getattr(self, f)[rows] for f in ("image", "audio", "present", "labels", "logits", "embedding")), self.name)

    def save(self, path: Path) -> None:
        """Write as compressed .npz (the fused rows' inputs only: the masked rows are rebuilt on load)."""
        n = len(self) // 3
        np.savez_compressed(path, image=self.image[:n], audio=self.audio[:n], labels=self.labels[:n], logits=self.logits, embedding=self.embedding, name=self.name)

    @classmethod
    def load(cls, path: Path) -> "ReferenceSet":
        """Read a set written by `save`."""
        with np.load(path) as data:
            image, audio, present = cls.patterns(data["image"], data["audio"])
            return cls(image, audio, present, np.tile(data["labels"], 3), data["logits"], data["embedding"], str(data["name"]))

"""What an export starts from: the torch model with its data contract, and held-out reference samples."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from edgemm.runtimes.preprocess import AudioSpec, ImageSpec

INPUT_NAMES = ("image", "audio", "present")
OUTPUT_NAMES = ("logits", "embedding")


@dataclass
class ExportSource:
    """A model in eval mode plus its preprocessing, labels and descriptive info for the manifest."""

    model: nn.Module
    image: ImageSpec
    audio: AudioSpec
    labels: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def example(self, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Example inputs (batch 2 by default: a batch-1 example lets exporters freeze the batch axis)."""
        gen = torch.Generator().manual_seed(0)
        return (
            torch.randn(batch, *self.image.shape, generator=gen),
            torch.randn(batch, *self.audio.shape, generator=gen),
            torch.ones(batch, 2),
        )


@dataclass
class ReferenceSet:
    """Preprocessed held-out samples (every modality pattern) and the torch model's outputs on them."""

    image: np.ndarray
    audio: np.ndarray
    present: np.ndarray
    labels: np.ndarray
    logits: np.ndarray  # torch reference
    embedding: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    @torch.no_grad()
    def build(cls, source: ExportSource, image: np.ndarray, audio: np.ndarray, labels: np.ndarray, batch: int = 256) -> "ReferenceSet":
        """Repeat the samples as fused, image-only and audio-only, and record the torch outputs."""
        n = len(labels)
        patterns = np.array([[1, 1], [1, 0], [0, 1]], np.float32)
        present = np.repeat(patterns, n, axis=0)
        image = np.tile(image, (3, 1, 1, 1)) * present[:, :1, None, None]
        audio = np.tile(audio, (3, 1, 1, 1)) * present[:, 1:, None, None]
        logits, embedding = [], []
        source.model.eval()
        for s in range(0, len(present), batch):
            out = source.model(*(torch.from_numpy(a[s : s + batch]) for a in (image, audio, present)))
            logits.append(out[0].numpy())
            embedding.append(out[1].numpy())
        return cls(
            image.astype(np.float32), audio.astype(np.float32), present, np.tile(labels, 3),
            np.concatenate(logits), np.concatenate(embedding),
        )  # fmt: skip

"""What an export starts from: the torch model with its data contract, and held-out reference samples."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from edgemm.runtimes.model import MODALITY_PATTERNS
from edgemm.runtimes.preprocess import AudioSpec, ImageSpec
from torch import nn

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

    @classmethod
    def build(cls, infer: Infer, image: np.ndarray, audio: np.ndarray, labels: np.ndarray, name: str = "torch", batch: int = 256) -> "ReferenceSet":
        """Repeat the samples as fused, image-only and audio-only; `infer` gives the reference outputs."""
        n = len(labels)
        present = np.repeat(np.array(list(MODALITY_PATTERNS.values()), np.float32), n, axis=0)
        image = (np.tile(image, (3, 1, 1, 1)) * present[:, :1, None, None]).astype(np.float32)
        audio = (np.tile(audio, (3, 1, 1, 1)) * present[:, 1:, None, None]).astype(np.float32)
        outs = [infer(image[s : s + batch], audio[s : s + batch], present[s : s + batch]) for s in range(0, len(present), batch)]
        logits, embedding = (np.concatenate([o[k] for o in outs]) for k in OUTPUT_NAMES)
        return cls(image, audio, present, np.tile(labels, 3), logits, embedding, name)


def torch_infer(model: nn.Module) -> Infer:
    """An `infer` callable for a torch model (eval mode, no grad), numpy in and out."""
    model.eval()

    @torch.no_grad()
    def infer(image: np.ndarray, audio: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
        outputs = model(torch.from_numpy(image), torch.from_numpy(audio), torch.from_numpy(present))
        return {name: out.numpy() for name, out in zip(OUTPUT_NAMES, outputs)}

    return infer

"""What an export starts from: the torch model with its data contract."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from edgemm.runtimes.contract import ModelContract
from edgemm.runtimes.preprocess import AudioSpec, ImageSpec
from edgemm.runtimes.reference import OUTPUT_NAMES, Infer
from torch import nn


@dataclass
class ExportSource:
    """A model in eval mode plus its preprocessing, labels and descriptive info for the manifest."""

    model: nn.Module
    image: ImageSpec
    audio: AudioSpec
    labels: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def contract(self) -> ModelContract:
        """The built-in interface: image, audio and a presence mask in; logits and the fused embedding out."""
        dim = self.info.get("embedding_dim")
        return ModelContract(image=self.image, audio=self.audio, labels=tuple(self.labels), embedding_dim=int(dim) if dim else None)

    def example(self, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Example inputs (batch 2 by default: a batch-1 example lets exporters freeze the batch axis)."""
        gen = torch.Generator().manual_seed(0)
        return (
            torch.randn(batch, *self.image.shape, generator=gen),
            torch.randn(batch, *self.audio.shape, generator=gen),
            torch.ones(batch, 2),
        )


def torch_infer(model: nn.Module) -> Infer:
    """An `infer` callable for a torch model (eval mode, no grad), numpy in and out."""
    model.eval()

    @torch.no_grad()
    def infer(image: np.ndarray, audio: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
        outputs = model(torch.from_numpy(image), torch.from_numpy(audio), torch.from_numpy(present))
        return {name: out.numpy() for name, out in zip(OUTPUT_NAMES, outputs)}

    return infer

"""The student: depthwise-separable CNN branches and a small gated-MLP fusion, built for edge ops.

Sized from its teacher's contract: image channels and size, a 2-D branch over log-mel features or a 1-D
branch over the raw waveform, the class count (0: an embedding model) and the embedding size. Inputs are the
canonical (image, audio, present); outputs (logits, embedding), or the embedding alone without classes.
No attention, LayerNorm or Softmax inside: every op is one that INT8 runtimes (ORT, OpenVINO, TFLite,
TensorRT) run in integer arithmetic.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .blocks import conv_bn


def separable(c_in: int, c_out: int, dims: int = 2) -> nn.Sequential:
    """Depthwise 3 (x3) then pointwise 1 (x1), each with batch norm and ReLU; 2-D, or 1-D over a waveform's frames."""
    conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)
    return nn.Sequential(
        conv(c_in, c_in, 3, 1, 1, groups=c_in, bias=False), norm(c_in), nn.ReLU(inplace=True),
        conv(c_in, c_out, 1, bias=False), norm(c_out), nn.ReLU(inplace=True),
    )  # fmt: skip


@dataclass(frozen=True)
class StudentConfig:
    """Width and depth of the student; input shapes come from the preprocessing specs (an empty shape: the
    student does not take that modality)."""

    widths: tuple[int, ...] = (24, 48, 96)  # one separable stage (then 2x2 pooling) per entry
    dim: int = 96  # width of each branch's pooled feature
    hidden: int = 128  # fusion MLP width
    embedding_dim: int = 64
    num_classes: int = 10  # 0: no class scores, the embedding is the output
    image_shape: tuple[int, ...] = (1, 32, 32)  # () without an image input
    audio_shape: tuple[int, ...] = (1, 40, 98)  # (1, mels, frames) log-mel, (1, samples) waveform, () without audio
    presence_input: bool = True  # takes the (N, 2) presence mask; False: every modality it takes is required

    @property
    def inputs(self) -> tuple[str, ...]:
        """Its forward() arguments in order: the modalities it takes, then the mask."""
        return (*(m for m, shape in (("image", self.image_shape), ("audio", self.audio_shape)) if shape), *(("present",) if self.presence_input else ()))

    def to_dict(self) -> dict:
        return {"arch": "student", **asdict(self)}


class Branch(nn.Sequential):
    """Strided stem conv, separable stages with pooling, a final separable conv and global average pooling."""

    def __init__(self, c_in: int, widths: tuple[int, ...], dim: int) -> None:
        layers: list[nn.Module] = [conv_bn(c_in, widths[0], stride=2)]
        prev = widths[0]
        for width in widths:
            layers += [separable(prev, width), nn.MaxPool2d(2)]
            prev = width
        layers += [separable(prev, dim), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        super().__init__(*layers)


class WaveBranch(nn.Sequential):
    """Raw waveform: a strided 1-D convolution as a learned filterbank (64-sample window, 16-sample hop: 4 ms at
    16 kHz), separable 1-D stages with 4x pooling, a final separable conv and global average pooling."""

    def __init__(self, widths: tuple[int, ...], dim: int) -> None:
        layers: list[nn.Module] = [nn.Conv1d(1, widths[0], 64, 16, bias=False), nn.BatchNorm1d(widths[0]), nn.ReLU(inplace=True)]
        prev = widths[0]
        for width in widths:
            layers += [separable(prev, width, dims=1), nn.MaxPool1d(4)]
            prev = width
        layers += [separable(prev, dim, dims=1), nn.AdaptiveAvgPool1d(1), nn.Flatten()]
        super().__init__(*layers)


class Student(nn.Module):
    """forward(image, audio, present) → (logits, embedding) — the modalities it takes, then the mask when it has one
    (`config.inputs`); absent modalities are zeroed and masked; the embedding alone without classes."""

    def __init__(self, config: StudentConfig = StudentConfig()) -> None:
        super().__init__()
        self.config = config
        if config.image_shape:
            self.image_branch = Branch(config.image_shape[0], config.widths, config.dim)
        if config.audio_shape:
            waveform = len(config.audio_shape) == 2
            self.audio_branch = WaveBranch(config.widths, config.dim) if waveform else Branch(config.audio_shape[0], config.widths, config.dim)
        branches = bool(config.image_shape) + bool(config.audio_shape)
        self.fuse = nn.Sequential(
            nn.Linear(branches * config.dim + 2, config.hidden), nn.ReLU(inplace=True), nn.Linear(config.hidden, config.embedding_dim)
        )
        if config.num_classes:
            self.head = nn.Sequential(nn.ReLU(), nn.Linear(config.embedding_dim, config.num_classes))
            self.image_head = nn.Linear(config.dim, config.num_classes)
            self.audio_head = nn.Linear(config.dim, config.num_classes)

    def forward_train(self, image: torch.Tensor | None, audio: torch.Tensor | None, present: torch.Tensor):
        """(logits, embedding, image-only logits, audio-only logits) from canonical inputs (None for a modality it
        does not take); the logits are None without classes, a branch's logits None without that branch."""
        features, branch_logits = [], []
        for k, (x, name) in enumerate(((image, "image_branch"), (audio, "audio_branch"))):
            if not hasattr(self, name):
                branch_logits.append(None)
                continue
            keep = present[:, k : k + 1]
            f = getattr(self, name)(x * keep[(...,) + (None,) * (x.dim() - 2)]) * keep
            features.append(f)
            branch_logits.append((self.image_head if k == 0 else self.audio_head)(f) if self.config.num_classes else None)
        embedding = self.fuse(torch.cat([*features, present], dim=1))
        if not self.config.num_classes:
            return None, embedding, None, None
        return self.head(embedding), embedding, *branch_logits

    def forward(self, *inputs: torch.Tensor):
        given = dict(zip(self.config.inputs, inputs))
        present = given.get("present")
        if present is None:  # no mask input: the modalities it takes are always there
            ones = torch.ones_like(inputs[0].flatten(1)[:, :1])
            present = torch.cat([ones * float(m in given) for m in ("image", "audio")], dim=1)
        logits, embedding, _, _ = self.forward_train(given.get("image"), given.get("audio"), present)
        return embedding if logits is None else (logits, embedding)
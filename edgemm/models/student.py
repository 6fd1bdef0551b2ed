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
    """Width and depth of the student; input shapes come from the preprocessing specs."""

    widths: tuple[int, ...] = (24, 48, 96)  # one separable stage (then 2x2 pooling) per entry
    dim: int = 96  # width of each branch's pooled feature
    hidden: int = 128  # fusion MLP width
    embedding_dim: int = 64
    num_classes: int = 10  # 0: no class scores, the embedding is the output
    image_shape: tuple[int, int, int] = (1, 32, 32)
    audio_shape: tuple[int, ...] = (1, 40, 98)  # (1, mels, frames) log-mel, or (1, samples) waveform

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
    """forward(image, audio, present) → (logits, embedding); absent modalities are zeroed and masked."""

    def __init__(self, config: StudentConfig = StudentConfig()) -> None:
        super().__init__()
        self.config = config
        self.image_branch = Branch(config.image_shape[0], config.widths, config.dim)
        waveform = len(config.audio_shape) == 2
        self.audio_branch = WaveBranch(config.widths, config.dim) if waveform else Branch(config.audio_shape[0], config.widths, config.dim)
        self.fuse = nn.Sequential(
            nn.Linear(2 * config.dim + 2, config.hidden), nn.ReLU(inplace=True), nn.Linear(config.hidden, config.embedding_dim)
        )
        if config.num_classes:
            self.head = nn.Sequential(nn.ReLU(), nn.Linear(config.embedding_dim, config.num_classes))
            self.image_head = nn.Linear(config.dim, config.num_classes)
            self.audio_head = nn.Linear(config.dim, config.num_classes)

    def forward_train(self, image: torch.Tensor, audio: torch.Tensor, present: torch.Tensor):
        """(logits, embedding, image-only logits, audio-only logits); the logits are None without classes."""
        p_img, p_aud = present[:, :1], present[:, 1:]
        img = self.image_branch(image * p_img[(...,) + (None,) * (image.dim() - 2)]) * p_img
        aud = self.audio_branch(audio * p_aud[(...,) + (None,) * (audio.dim() - 2)]) * p_aud
        embedding = self.fuse(torch.cat([img, aud, present], dim=1))
        if not self.config.num_classes:
            return None, embedding, None, None
        return self.head(embedding), embedding, self.image_head(img), self.audio_head(aud)

    def forward(self, image: torch.Tensor, audio: torch.Tensor, present: torch.Tensor):
        logits, embedding, _, _ = self.forward_train(image, audio, present)
        return embedding if logits is None else (logits, embedding)

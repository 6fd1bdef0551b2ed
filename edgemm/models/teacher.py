"""The teacher: CNN image encoder, CNN log-mel audio encoder, bidirectional cross-attention fusion."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .blocks import CrossAttention, conv_bn


@dataclass(frozen=True)
class TeacherConfig:
    """Architecture of the teacher (input shapes come from the preprocessing specs)."""

    width: int = 32  # channels of the first conv; later stages double it
    dim: int = 256  # token width of the fusion
    heads: int = 4
    embedding_dim: int = 128
    num_classes: int = 10
    image_shape: tuple[int, int, int] = (1, 32, 32)
    audio_shape: tuple[int, int, int] = (1, 40, 98)

    def to_dict(self) -> dict:
        return {"arch": "teacher", **asdict(self)}


class ImageEncoder(nn.Module):
    """(B,C,32,32) → (B, 64, dim) tokens on an 8x8 grid."""

    def __init__(self, c_in: int, width: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            conv_bn(c_in, width), conv_bn(width, 2 * width), nn.MaxPool2d(2),
            conv_bn(2 * width, 4 * width), nn.MaxPool2d(2),
            conv_bn(4 * width, dim),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(2).transpose(1, 2)


class AudioEncoder(nn.Module):
    """(B,1,n_mels,T) log-mel → (B, T/8, dim) tokens along time (frequency pooled)."""

    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            conv_bn(1, width), nn.MaxPool2d(2),
            conv_bn(width, 2 * width), nn.MaxPool2d(2),
            conv_bn(2 * width, 4 * width), conv_bn(4 * width, 4 * width), nn.MaxPool2d(2),
            conv_bn(4 * width, dim),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=2).transpose(1, 2)


class Teacher(nn.Module):
    """Image and audio encoders, cross-attention both ways, fused embedding and classifier.

    forward(image, audio, present) → (logits, embedding); `present` (B,2) flags image/audio.
    An absent modality is zeroed inside the model and its attention update gated off, so whatever
    the caller feeds for it is ignored. `forward_train` also returns per-modality auxiliary logits.
    """

    def __init__(self, config: TeacherConfig = TeacherConfig()) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        self.image_encoder = ImageEncoder(config.image_shape[0], config.width, dim)
        self.audio_encoder = AudioEncoder(config.width, dim)
        n_img = (config.image_shape[1] // 4) * (config.image_shape[2] // 4)
        n_aud = config.audio_shape[2] // 8
        self.image_pos = nn.Parameter(torch.randn(1, n_img, dim) * 0.02)
        self.audio_pos = nn.Parameter(torch.randn(1, n_aud, dim) * 0.02)
        self.image_from_audio = CrossAttention(dim, config.heads)
        self.audio_from_image = CrossAttention(dim, config.heads)
        self.fuse = nn.Sequential(
            nn.LayerNorm(2 * dim + 2), nn.Linear(2 * dim + 2, dim), nn.GELU(), nn.Linear(dim, config.embedding_dim)
        )
        self.head = nn.Linear(config.embedding_dim, config.num_classes)
        self.image_head = nn.Linear(dim, config.num_classes)
        self.audio_head = nn.Linear(dim, config.num_classes)

    def forward_train(self, image: torch.Tensor, audio: torch.Tensor, present: torch.Tensor):
        p_img, p_aud = present[:, 0], present[:, 1]
        img = self.image_encoder(image * p_img[:, None, None, None]) + self.image_pos
        aud = self.audio_encoder(audio * p_aud[:, None, None, None]) + self.audio_pos
        aux_img, aux_aud = self.image_head(img.mean(1)), self.audio_head(aud.mean(1))
        img, aud = self.image_from_audio(img, aud, p_aud), self.audio_from_image(aud, img, p_img)
        pooled = torch.cat([img.mean(1) * p_img[:, None], aud.mean(1) * p_aud[:, None], present], dim=1)
        embedding = self.fuse(pooled)
        return self.head(embedding), embedding, aux_img, aux_aud

    def forward(self, image: torch.Tensor, audio: torch.Tensor, present: torch.Tensor):
        logits, embedding, _, _ = self.forward_train(image, audio, present)
        return logits, embedding

"""A user's own camera+microphone model, unlike edgemm's built-in ones.

- image: 3x64x64 RGB, cut into 8x8 patches, one self-attention block (a tiny ViT);
- audio: the raw 16 kHz waveform (1 x 16000), three strided 1-D convolutions (no log-mel);
- fusion: one learned query cross-attends over the image and audio tokens together;
- output: class scores `scores` over six labels of its own; no presence input (a missing modality is fed as zeros);
  `build_embedder` gives the same network's 32-d embedding instead (`embedder.yaml`).

edgemm imports this file (`edgemm export --model models.py:build`) and calls `build()`.
"""
from __future__ import annotations

import torch
from torch import nn

LABELS = ("red-low", "red-high", "green-low", "green-high", "blue-low", "blue-high")
DIM = 32


class Attention(nn.Module):
    """Multi-head attention written out (the exporters all take matmul + softmax)."""

    def __init__(self, dim: int = DIM, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.out = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        n, lq, d = queries.shape
        h = self.heads
        q = self.q(queries).reshape(n, lq, h, d // h).transpose(1, 2)
        k, v = self.kv(tokens).reshape(n, -1, 2, h, d // h).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-1, -2) * (d // h) ** -0.5, dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(n, lq, d))


class Block(nn.Module):
    """Pre-norm transformer block: self-attention (or cross-attention onto `context`) and an MLP."""

    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm_q(x), self.norm_kv(x if context is None else context))
        return x + self.mlp(self.norm_mlp(x))


class ColourToneNet(nn.Module):
    """forward(rgb (N,3,64,64), wave (N,1,16000)) -> scores (N,6)."""

    def __init__(self, classes: int = len(LABELS)) -> None:
        super().__init__()
        self.patches = nn.Conv2d(3, DIM, kernel_size=8, stride=8)  # 64 tokens
        self.image_pos = nn.Parameter(torch.zeros(1, 64, DIM))
        self.image_block = Block()
        self.wave = nn.Sequential(
            nn.Conv1d(1, 16, kernel_size=64, stride=16), nn.ReLU(),
            nn.Conv1d(16, DIM, kernel_size=8, stride=4), nn.ReLU(),
            nn.Conv1d(DIM, DIM, kernel_size=8, stride=4), nn.ReLU(),
        )  # fmt: skip
        self.query = nn.Parameter(torch.zeros(1, 1, DIM))
        self.fuse = Block()
        self.head = nn.Sequential(nn.LayerNorm(DIM), nn.Linear(DIM, classes))

    def fused(self, rgb: torch.Tensor, wave: torch.Tensor) -> torch.Tensor:
        """The learned query's vector after cross-attending over the image and audio tokens (N, DIM)."""
        image = self.image_block(self.patches(rgb).flatten(2).transpose(1, 2) + self.image_pos)
        audio = self.wave(wave).transpose(1, 2)
        return self.fuse(self.query.expand(rgb.shape[0], -1, -1), torch.cat([image, audio], dim=1))[:, 0]

    def forward(self, rgb: torch.Tensor, wave: torch.Tensor) -> torch.Tensor:
        return self.head(self.fused(rgb, wave))


class ColourToneEmbedder(ColourToneNet):
    """The same network read before its classifier: forward(rgb, wave) -> embedding (N, 32), the normalised fused
    vector — for answering with the nearest enrolled example (`edgemm live --enroll FOLDER`)."""

    def forward(self, rgb: torch.Tensor, wave: torch.Tensor) -> torch.Tensor:
        return self.head[0](self.fused(rgb, wave))


def build() -> nn.Module:
    """The factory edgemm calls: an untrained ColourToneNet (edgemm loads the weights into it)."""
    return ColourToneNet()


def build_embedder() -> nn.Module:
    """The embedding variant (same weights file): `edgemm export --model models.py:build_embedder --spec embedder.yaml`."""
    return ColourToneEmbedder()

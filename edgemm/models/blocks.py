"""Layers shared by the teacher and (later) student models."""
from __future__ import annotations

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class CrossAttention(nn.Module):
    """Pre-norm cross-attention block: `query` tokens attend to `context` tokens, then an MLP.

    `gate` (B,) scales the attended update, so an absent context modality adds nothing.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim))

    def forward(self, query: torch.Tensor, context: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(context)
        attended, _ = self.attn(self.norm_q(query), kv, kv, need_weights=False)
        query = query + attended * gate[:, None, None]
        return query + self.mlp(self.norm_mlp(query))

"""Stem (patch embedding + position embedding) and token pooling between stages."""
from typing import Tuple

import torch
from torch import Tensor, nn

from .blocks import layer_norm


class Stem(nn.Module):
    """Patch-embedding convolution plus a learned position embedding (and a CLS token for 1-D)."""

    def __init__(self, in_chans: int, dim: int, patch_size: int, num_patches: int, cls_token: bool) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + int(cls_token), dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"} | ({"cls_token"} if self.cls_token is not None else set())

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embed


class Pool1d(nn.Module):
    """PSViT-1D pooling: patch tokens -> 1-D conv (new width) -> 1-D max pool; CLS -> linear."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim_in, dim_out, kernel_size=3, padding=1)
        self.pool = nn.MaxPool1d(kernel_size=3, stride=2, padding=1)
        self.cls = nn.Linear(dim_in, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.pool(self.conv(x[:, 1:].transpose(1, 2))).transpose(1, 2)
        return torch.cat([self.cls(x[:, :1]), tokens], dim=1)


class Pool2d(nn.Module):
    """PSViT-2D pooling: tokens on their grid -> stride-2 3x3 conv (new width) -> LayerNorm."""

    def __init__(self, dim_in: int, dim_out: int, grid: Tuple[int, int]) -> None:
        super().__init__()
        self.grid = grid
        self.conv = nn.Conv2d(dim_in, dim_out, kernel_size=3, stride=2, padding=1)
        self.norm = layer_norm(dim_out)

    def forward(self, x: Tensor) -> Tensor:
        b, _, c = x.shape
        x = x.transpose(1, 2).reshape(b, c, *self.grid)
        return self.norm(self.conv(x).flatten(2).transpose(1, 2))

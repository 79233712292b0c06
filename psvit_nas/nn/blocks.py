"""Transformer layers and the five cell choices.

Every cell maps tokens to tokens: `cell(x, maps=None)`. When `maps` is a list, each
layer of the cell appends its (B, heads, N, N) attention map to it.
"""
from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import StochasticDepth

from .attention import Attention, LSLAttention, ReAttention, SharedAttention


def layer_norm(dim: int) -> nn.LayerNorm:
    """LayerNorm with eps 1e-6, as in timm's ViT and DeiT (so their weights load and give the same logits)."""
    return nn.LayerNorm(dim, eps=1e-6)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer layer around any attention variant; `drop_path` is the stochastic-depth rate of
    each residual branch (per sample, training only)."""

    def __init__(self, dim: int, attn: nn.Module, mlp_ratio: float, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = attn
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = StochasticDepth(drop_path, "row")

    def run(self, x: Tensor, **attn_kwargs) -> tuple[Tensor, Tensor | None]:
        out, attn = self.attn(self.norm1(x), **attn_kwargs)
        x = x + self.drop_path(out)
        return x + self.drop_path(self.mlp(self.norm2(x))), attn

    def forward(self, x: Tensor, maps: list[Tensor] | None = None) -> Tensor:
        x, attn = self.run(x, return_attn=maps is not None)
        if maps is not None:
            maps.append(attn)
        return x


class SharePair(nn.Module):
    """Two layers; the second reuses the first's post-softmax attention map."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float = 0.0) -> None:
        super().__init__()
        self.first = Block(dim, Attention(dim, heads), mlp_ratio, drop_path)
        self.second = Block(dim, SharedAttention(dim, heads), mlp_ratio, drop_path)

    def forward(self, x: Tensor, maps: list[Tensor] | None = None) -> Tensor:
        x, attn = self.first.run(x, return_attn=True)
        x, _ = self.second.run(x, attn=attn)
        if maps is not None:
            maps.extend((attn, attn))
        return x


class IdentityCell(nn.Module):
    """The skipped cell."""

    def forward(self, x: Tensor, maps: list[Tensor] | None = None) -> Tensor:
        return x


def make_cell(choice: str, dim: int, heads: int, mlp_ratio: float, token_shape: tuple[int, ...],
              cls_token: bool, drop_path: float = 0.0) -> nn.Module:
    """Build the module for one cell choice; `drop_path`: its layers' stochastic-depth rate."""
    if choice == "layer":
        return Block(dim, Attention(dim, heads), mlp_ratio, drop_path)
    if choice == "share":
        return SharePair(dim, heads, mlp_ratio, drop_path)
    if choice == "identity":
        return IdentityCell()
    if choice == "reattn":
        return Block(dim, ReAttention(dim, heads), mlp_ratio, drop_path)
    if choice == "lsla":
        return Block(dim, LSLAttention(dim, heads, token_shape, cls_token), mlp_ratio, drop_path)
    raise ValueError(f"unknown cell choice {choice!r}")

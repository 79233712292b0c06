"""Attention variants.

Every variant maps (B, N, C) tokens to (B, N, C) and returns `(out, attn_map)`, the map being
the post-softmax one (a distribution over keys per query); Re-Attention returns both its
softmax map and the signed, head-mixed map it applies (`ReAttentionMaps`). A map is
materialised only when someone needs it: a `share` partner, Re-Attention, LSLA, an
analysis, or the explicit-matmul mode used to verify the cost model. Otherwise
`Attention` runs through `F.scaled_dot_product_attention`.

The modules are TorchScript-compatible (hence `typing`'s Optional/Tuple and no postponed annotations).
"""
import contextlib
import contextvars
import os
from typing import Iterator, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_EXPLICIT = contextvars.ContextVar(
    "psvit_nas_explicit_attention", default=os.environ.get("PSVIT_NAS_EXPLICIT_ATTENTION", "0") == "1")


@contextlib.contextmanager
def explicit_attention(enabled: bool = True) -> Iterator[None]:
    """Write all attention as explicit matmuls (for FlopCounterMode); also PSVIT_NAS_EXPLICIT_ATTENTION=1."""
    token = _EXPLICIT.set(enabled)
    try:
        yield
    finally:
        _EXPLICIT.reset(token)


def _explicit(return_attn: bool) -> bool:
    """Whether to materialise the map: asked for, or the explicit mode is on (never inside TorchScript)."""
    if not torch.jit.is_scripting():
        return return_attn or _EXPLICIT.get()
    return return_attn


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, N, C) -> (B, heads, N, C // heads)."""
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, heads, N, d) -> (B, N, heads * d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class Attention(nn.Module):
    """Multi-head self-attention (timm style, fused QKV)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _qkv(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def forward(self, x: Tensor, return_attn: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        q, k, v = self._qkv(x)
        attn: Optional[Tensor] = None
        if _explicit(return_attn):
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            out = attn @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(merge_heads(out)), attn


class SharedAttention(nn.Module):
    """The second layer of a `share` pair: applies its partner's map to its own V. No Q/K."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, attn: Tensor) -> Tuple[Tensor, Tensor]:
        out = attn @ split_heads(self.v(x), self.heads)
        return self.proj(merge_heads(out)), attn


class ReAttentionMaps(NamedTuple):
    """A Re-Attention layer's maps: `softmax` (before the head mix) and `mixed` (mixed, BatchNorm'd, applied)."""

    softmax: Tensor
    mixed: Tensor


class ReAttention(Attention):
    """DeepViT Re-Attention: the softmax map is mixed across heads (1x1 conv), BatchNorm'd, then applied;
    `transform_scale`: the applied map is also scaled by head_dim^-0.5, as in DeepViT's published models."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, transform_scale: bool = False) -> None:
        super().__init__(dim, heads, qkv_bias)
        self.reattn = nn.Conv2d(heads, heads, kernel_size=1)
        self.norm = nn.BatchNorm2d(heads)
        self.map_scale = self.scale if transform_scale else 1.0

    def forward(self, x: Tensor, return_attn: bool = False) -> Tuple[Tensor, ReAttentionMaps]:
        q, k, v = self._qkv(x)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        b, h, n, _ = attn.shape
        # The 1x1 conv over heads, written as one (H x H) @ (H x N*N) matmul: same weights, same MACs,
        # several times faster than a convolution on CPU.
        bias = self.reattn.bias
        assert bias is not None  # for TorchScript: the conv has a bias
        mixed = self.reattn.weight.view(h, h) @ attn.reshape(b, h, n * n) + bias.view(h, 1)
        applied = self.norm(mixed.view(b, h, n, n)) * self.map_scale
        return self.proj(merge_heads(applied @ v)), ReAttentionMaps(attn, applied)


def relative_index(shape: Tuple[int, ...], cls_token: bool) -> Tuple[Tensor, int]:
    """Relative-position index (N, N) into a bias table, and the table size.

    2-D token grids use (dy, dx) offsets; 1-D token sequences (CLS included) use index offsets.
    """
    if len(shape) == 2:
        h, w = shape
        coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).flatten(1)
        rel = coords[:, :, None] - coords[:, None, :]
        return (rel[0] + h - 1) * (2 * w - 1) + (rel[1] + w - 1), (2 * h - 1) * (2 * w - 1)
    n = shape[0] + int(cls_token)
    pos = torch.arange(n)
    return pos[:, None] - pos[None, :] + n - 1, 2 * n - 1


class LSLAttention(nn.Module):
    """ViT-LSLA light self-limited attention.

    Only Q is projected; K = V = X split into heads. The logits are multiplied by a dynamic
    scale and shifted by an inner relative position bias before the softmax; an outer relative
    position bias (initialised at zero) is added after it; then the output projection. The
    dynamic scale has the inner bias's structure, one learnable value per head and relative
    offset (initialised at the fixed 1/sqrt(d)), so keys near the query can get a larger scale.
    """

    def __init__(self, dim: int, heads: int, token_shape: Tuple[int, ...], cls_token: bool,
                 qkv_bias: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        index, size = relative_index(token_shape, cls_token)
        self.register_buffer("rel_index", index, persistent=False)
        self.scale = nn.Parameter(torch.full((heads, size), (dim // heads) ** -0.5))
        self.inner_bias = nn.Parameter(torch.zeros(heads, size))
        self.outer_bias = nn.Parameter(torch.zeros(heads, size))
        nn.init.trunc_normal_(self.inner_bias, std=0.02)
        self.proj = nn.Linear(dim, dim)

    def no_weight_decay(self) -> set[str]:
        """Its per-head tables (scale and biases) train without weight decay, like position embeddings."""
        return {"scale", "inner_bias", "outer_bias"}

    def forward(self, x: Tensor, return_attn: bool = False) -> Tuple[Tensor, Tensor]:
        q = split_heads(self.q(x), self.heads)
        kv = split_heads(x, self.heads)
        logits = (q @ kv.transpose(-2, -1)) * self._bias(self.scale) + self._bias(self.inner_bias)
        attn = logits.softmax(dim=-1)
        return self.proj(merge_heads((attn + self._bias(self.outer_bias)) @ kv)), attn

    def _bias(self, table: Tensor) -> Tensor:
        """(heads, table) -> (heads, N, N); index_select's backward is a plain index_add (2-3x faster)."""
        n = self.rel_index.shape[0]
        return table.index_select(1, self.rel_index.flatten()).view(-1, n, n)

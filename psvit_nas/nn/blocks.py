"""Transformer layers and the cells built from them (`choices` registers them as cell choices).

Every cell maps tokens to tokens: `cell(x)`. The attention maps are each attention module's second output
(`analysis.attention_maps` collects them with forward hooks). TorchScript-compatible, like `attention`.
"""
from torch import Tensor, nn
from torchvision.ops import StochasticDepth

from .attention import Attention, SharedAttention


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
    each residual branch (per sample, training only); `scale_adjustment` r (DeepViT's): each branch reads
    x * r and adds its output / r."""

    def __init__(self, dim: int, attn: nn.Module, mlp_ratio: float, drop_path: float = 0.0,
                 scale_adjustment: float = 1.0) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = attn
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = StochasticDepth(drop_path, "row")
        self.scale_adjustment = scale_adjustment

    def attn_input(self, x: Tensor) -> Tensor:
        return self.norm1(x * self.scale_adjustment) if self.scale_adjustment != 1.0 else self.norm1(x)

    def residual(self, x: Tensor, attn_out: Tensor) -> Tensor:
        """The attention branch's output `attn_out` added to `x`, then the MLP branch."""
        r = self.scale_adjustment
        x = x + self.drop_path(attn_out / r if r != 1.0 else attn_out)
        mlp = self.mlp(self.norm2(x * r if r != 1.0 else x))
        return x + self.drop_path(mlp / r if r != 1.0 else mlp)

    def forward(self, x: Tensor) -> Tensor:
        out = self.attn(self.attn_input(x))[0]
        return self.residual(x, out)


class SharedBlock(Block):
    """The second layer of a `share` pair: its attention applies the map it is given."""

    def forward(self, x: Tensor, attn: Tensor) -> Tensor:
        return self.residual(x, self.attn(self.attn_input(x), attn)[0])


class SharePair(nn.Module):
    """Two layers; the second reuses the first's post-softmax attention map."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float = 0.0,
                 scale_adjustment: float = 1.0) -> None:
        super().__init__()
        self.first = Block(dim, Attention(dim, heads), mlp_ratio, drop_path, scale_adjustment)
        self.second = SharedBlock(dim, SharedAttention(dim, heads), mlp_ratio, drop_path, scale_adjustment)

    def forward(self, x: Tensor) -> Tensor:
        out, attn = self.first.attn(self.first.attn_input(x), True)
        assert attn is not None
        return self.second(self.first.residual(x, out), attn)


class IdentityCell(nn.Module):
    """The skipped cell."""

    def forward(self, x: Tensor) -> Tensor:
        return x

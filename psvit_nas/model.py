"""`PSViT`: a standalone model built from an architecture spec."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from .nn import Pool1d, Pool2d, Stem, layer_norm, make_cell
from .space import ArchSpec, SearchSpace


class Trunk(nn.Module):
    """What every subnet of a space shares: stem, token pooling, final norm and head."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        widths = [s.width for s in space.stages]
        shapes = space.token_shapes
        self.stem = Stem(space.in_chans, widths[0], space.patch_size, space.tokens(0) - int(space.has_cls),
                         space.has_cls)
        self.pools = nn.ModuleList(
            Pool1d(widths[i], widths[i + 1]) if space.pooling == "1d" else Pool2d(widths[i], widths[i + 1], shapes[i])
            for i in range(len(widths) - 1))
        self.norm = layer_norm(widths[-1])
        self.head = nn.Linear(widths[-1], space.num_classes)
        self.apply(init_weights)

    def _cell_args(self, stage: int) -> tuple:
        s = self.space.stages[stage]
        return s.width, s.heads, s.mlp_ratio, self.space.token_shapes[stage], self.space.has_cls

    def _features(self, x: Tensor, cells: Sequence[Sequence[nn.Module]], maps: list[Tensor] | None) -> Tensor:
        x = self.stem(x)
        for s, stage in enumerate(cells):
            if s:
                x = self.pools[s - 1](x)
            for cell in stage:
                x = cell(x, maps)
        return self.norm(x)

    def forward_head(self, x: Tensor) -> Tensor:
        """Classify from the CLS token (1-D pooling) or the mean token (2-D pooling)."""
        return self.head(x[:, 0] if self.space.has_cls else x.mean(dim=1))


class PSViT(Trunk):
    """A PSViT model for one architecture (timm style: `forward_features`, `forward_head`)."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__(spec.space)
        self.spec = spec
        self.stages = nn.ModuleList(
            nn.ModuleList(make_cell(choice, *self._cell_args(s)) for choice in stage)
            for s, stage in enumerate(spec.arch.stages))
        self.stages.apply(init_weights)

    @classmethod
    def from_spec(cls, spec: ArchSpec) -> "PSViT":
        """A freshly initialised model for `spec`."""
        return cls(spec)

    def forward_features(self, x: Tensor, maps: list[Tensor] | None = None) -> Tensor:
        """Tokens after the final norm; with a `maps` list, every layer's attention map is appended to it."""
        return self._features(x, self.stages, maps)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def init_weights(module: nn.Module) -> None:
    """timm ViT initialisation: truncated-normal linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


__all__ = ["PSViT", "Trunk"]

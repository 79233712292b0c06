"""`PSViT`: a standalone model built from an architecture spec."""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .nn import Pool1d, Pool2d, Stem, layer_norm, make_cell
from .space import ArchSpec, SearchSpace


class Trunk(nn.Module):
    """What every subnet of a space shares: stem, token pooling, final norm and head. `drop_path_rate`: the
    stochastic depth of the last cell; it rises linearly from 0 over the cell positions, as in DeiT."""

    def __init__(self, space: SearchSpace, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.space, self.drop_path_rate, self.grad_checkpointing = space, drop_path_rate, False
        widths = [s.width for s in space.stages]
        shapes = space.token_shapes
        self.stem = Stem(space.in_chans, widths[0], space.patch_size, space.tokens(0) - int(space.has_cls),
                         space.has_cls)
        self.pools = nn.ModuleList(
            Pool1d(widths[i], widths[i + 1]) if space.pooling == "1d" else Pool2d(widths[i], widths[i + 1], shapes[i])
            for i in range(len(widths) - 1))
        self.norm = layer_norm(widths[-1])
        self.global_pool = "token" if space.has_cls else "avg"
        self.head: nn.Module = nn.Linear(widths[-1], space.num_classes)
        self.apply(init_weights)

    def _cell_args(self, stage: int, index: int) -> tuple:
        """make_cell's arguments for cell `index` of `stage`."""
        s, cells = self.space.stages[stage], [st.cells for st in self.space.stages]
        position = sum(cells[:stage]) + index
        rate = self.drop_path_rate * position / max(1, sum(cells) - 1)
        return s.width, s.heads, s.mlp_ratio, self.space.token_shapes[stage], self.space.has_cls, rate

    def _features(self, x: Tensor, cells: Sequence[Sequence[nn.Module]], maps: list[Tensor] | None) -> Tensor:
        x = self.stem(x)
        checkpointed = self.grad_checkpointing and self.training and maps is None and torch.is_grad_enabled()
        for s, stage in enumerate(cells):
            if s:
                x = self.pools[s - 1](x)
            for cell in stage:
                x = checkpoint(cell, x, use_reentrant=False) if checkpointed else cell(x, maps)
        return self.norm(x)

    def no_weight_decay(self) -> set[str]:
        """Parameters trained without weight decay, as each module declares them (position embedding, CLS
        token, LSLA's tables); `train.param_groups` adds every 1-D tensor (biases, norms), as timm does."""
        return {f"{prefix}.{name}" for prefix, module in self.named_modules() if module is not self
                and hasattr(module, "no_weight_decay") for name in module.no_weight_decay()}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each cell's activations in the backward pass instead of storing them (less memory, the same
        gradients)."""
        self.grad_checkpointing = enable

    @property
    def num_classes(self) -> int:
        return self.space.num_classes

    @property
    def num_features(self) -> int:
        """The width of the pooled features the head reads."""
        return self.space.stages[-1].width

    @property
    def head_hidden_size(self) -> int:
        """timm's name for the head's input width; there is no pre-logits layer, so `num_features`."""
        return self.num_features

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new, freshly initialised head for `num_classes` (fine-tuning on another dataset); 0: no head, the
        model returns pooled features of width `num_features`, as timm's models do. `global_pool`: 'token' (CLS
        models), 'avg' or '' (no pooling: `forward_head` returns the tokens)."""
        if global_pool is not None:
            if global_pool not in ("", "avg", "token") or (global_pool == "token" and not self.space.has_cls):
                raise ValueError(f"global_pool {global_pool!r}: expected 'avg', '' or, with a CLS token, 'token'")
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(self.head)
        self.space = replace(self.space, num_classes=num_classes)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool the tokens (the CLS token, or their mean) and classify; `pre_logits`: the pooled features."""
        if self.global_pool == "token":
            x = x[:, 0]
        elif self.global_pool == "avg":
            x = x.mean(dim=1)
        return x if pre_logits else self.head(x)


class PSViT(Trunk):
    """A PSViT model for one architecture, with timm's head contract (`forward_features`, `forward_head`,
    `reset_classifier`, `num_features`, `global_pool`)."""

    def __init__(self, spec: ArchSpec, drop_path_rate: float = 0.0) -> None:
        super().__init__(spec.space, drop_path_rate)
        self.spec = spec
        self.stages = nn.ModuleList(
            nn.ModuleList(make_cell(choice, *self._cell_args(s, i)) for i, choice in enumerate(stage))
            for s, stage in enumerate(spec.arch.stages))
        self.stages.apply(init_weights)

    @classmethod
    def from_spec(cls, spec: ArchSpec, drop_path_rate: float = 0.0) -> "PSViT":
        """A freshly initialised model for `spec`."""
        return cls(spec, drop_path_rate)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        super().reset_classifier(num_classes, global_pool)
        self.spec = ArchSpec(self.space, self.spec.arch, dict(self.spec.metrics))

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

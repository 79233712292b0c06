"""`PSViT`: a standalone model built from an architecture spec, with timm's model contract.

TorchScript-compatible (`torch.jit.script`, and FX then TorchScript): hence `typing`'s Optional/List/Tuple and
no postponed annotations here.
"""
from dataclasses import replace
from typing import List, Optional, Tuple, Union

import torch
from timm.models._features import feature_take_indices
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .choices import CellArgs, make_cell
from .nn import Pool1d, Pool2d, Stem, layer_norm
from .space import ArchSpec, SearchSpace


class Stage(nn.Sequential):
    """One stage's cells, run in order; `grad_checkpointing`: recompute each cell in the backward pass."""

    def __init__(self, *cells: nn.Module) -> None:
        super().__init__(*cells)
        self.grad_checkpointing = False

    def forward(self, x: Tensor) -> Tensor:
        for cell in self:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled() and not torch.jit.is_scripting():
                x = checkpoint(cell, x, use_reentrant=False)
            else:
                x = cell(x)
        return x


class Trunk(nn.Module):
    """What every subnet of a space shares: stem, token pooling, final norm and head. `drop_path_rate`: the
    stochastic depth of the last cell; it rises linearly from 0 over the cell positions, as in DeiT."""

    def __init__(self, space: SearchSpace, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.space, self.drop_path_rate, self.grad_checkpointing = space, drop_path_rate, False
        widths = [s.width for s in space.stages]
        shapes = space.token_shapes
        self.num_prefix_tokens = int(space.has_cls)
        self.stem = Stem(space.in_chans, widths[0], space.patch_size, space.tokens(0) - self.num_prefix_tokens,
                         space.has_cls)
        self.pools = nn.ModuleList(
            Pool1d(widths[i], widths[i + 1]) if space.pooling == "1d" else Pool2d(widths[i], widths[i + 1], shapes[i])
            for i in range(len(widths) - 1))
        self.norm = layer_norm(widths[-1])
        self.num_classes = space.num_classes
        self.num_features = self.head_hidden_size = widths[-1]
        self.global_pool = "token" if space.has_cls else "avg"
        self.head: nn.Module = nn.Linear(widths[-1], space.num_classes) if space.num_classes > 0 else nn.Identity()
        # timm's feature metadata, one entry per stage; 1-D pooling keeps a token sequence, mapped as 1 x L
        self.grids: List[Tuple[int, int]] = [(s[0], s[1]) if len(s) == 2 else (1, s[0]) for s in shapes]
        self.feature_info = [
            dict(num_chs=w, reduction=space.patch_size * 2 ** i, module=f"stages.{i}") for i, w in enumerate(widths)]
        self.apply(init_weights)

    def _cell_args(self, stage: int, index: int) -> CellArgs:
        """Where cell `index` of `stage` sits, and its stochastic depth."""
        s, cells = self.space.stages[stage], [st.cells for st in self.space.stages]
        position = sum(cells[:stage]) + index
        rate = self.drop_path_rate * position / max(1, sum(cells) - 1)
        return CellArgs(s.width, s.heads, s.mlp_ratio, self.space.token_shapes[stage], self.space.has_cls, rate,
                        self.space.reattn_transform_scale, self.space.scale_adjustment)

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        """Parameters trained without weight decay, as each module declares them (position embedding, CLS
        token, LSLA's tables); `train.param_groups` adds every 1-D tensor (biases, norms), as timm does."""
        return {f"{prefix}.{name}" for prefix, module in self.named_modules() if module is not self
                and hasattr(module, "no_weight_decay") for name in module.no_weight_decay()}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each cell's activations in the backward pass instead of storing them (less memory, the same
        gradients)."""
        self.grad_checkpointing = enable
        for module in self.modules():
            if isinstance(module, Stage):
                module.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new, freshly initialised head for `num_classes` (fine-tuning on another dataset); 0: no head, the
        model returns pooled features of width `num_features`, as timm's models do. `global_pool`: 'token' (CLS
        models), 'avg' or '' (no pooling: `forward_head` returns the tokens)."""
        if global_pool is not None:
            if global_pool not in ("", "avg", "token") or (global_pool == "token" and not self.space.has_cls):
                raise ValueError(f"global_pool {global_pool!r}: expected 'avg', '' or, with a CLS token, 'token'")
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(self.head)
        self.num_classes = num_classes
        self.space = replace(self.space, num_classes=num_classes)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool the tokens (the CLS token, or their mean) and classify; `pre_logits`: the pooled features."""
        if self.global_pool == "token":
            x = x[:, 0]
        elif self.global_pool == "avg":
            x = x[:, self.num_prefix_tokens:].mean(dim=1)
        return x if pre_logits else self.head(x)

    def _to_map(self, x: Tensor, stage: int) -> Tensor:
        """A stage's tokens (B, N, C) as an NCHW map of its patch tokens (the CLS token dropped)."""
        b, _, c = x.shape
        h, w = self.grids[stage]
        return x[:, self.num_prefix_tokens:].transpose(1, 2).reshape(b, c, h, w)


class PSViT(Trunk):
    """A PSViT model for one architecture, with timm's model contract: `forward_features`, `forward_head`,
    `reset_classifier`, `num_features`, `global_pool`, `feature_info`, `forward_intermediates` and
    `prune_intermediate_layers` (one NCHW map per stage, as timm's hierarchical PiT gives them)."""

    def __init__(self, spec: ArchSpec, drop_path_rate: float = 0.0) -> None:
        super().__init__(spec.space, drop_path_rate)
        self.spec = spec
        self.stages = nn.ModuleList(
            Stage(*(make_cell(choice, self._cell_args(s, i)) for i, choice in enumerate(stage)))
            for s, stage in enumerate(spec.arch.stages))
        self.stages.apply(init_weights)

    @classmethod
    def from_spec(cls, spec: ArchSpec, drop_path_rate: float = 0.0) -> "PSViT":
        """A freshly initialised model for `spec`."""
        return cls(spec, drop_path_rate)

    @torch.jit.ignore
    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        super().reset_classifier(num_classes, global_pool)
        self.spec = ArchSpec(self.space, self.spec.arch, dict(self.spec.metrics))

    def forward_intermediates(self, x: Tensor, indices: Optional[Union[int, List[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False
                              ) -> Union[List[Tensor], Tuple[Tensor, List[Tensor]]]:
        """Each stage's output (`indices`: the last n stages, or those listed; all by default) as NCHW maps
        or, `output_fmt` 'NLC', as tokens; then, unless `intermediates_only`, the final normed tokens.
        `norm`: the last stage's map is normed too (the final norm fits only its width)."""
        assert output_fmt in ("NCHW", "NLC"), "output_fmt must be NCHW or NLC"
        take, max_index = feature_take_indices(len(self.stages), indices)
        intermediates: List[Tensor] = []
        x = self.stem(x)
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            if not stop_early or i <= max_index:
                x = stage(self._enter(x, i))
                if i in take:
                    y = self.norm(x) if norm and i == last else x
                    intermediates.append(self._to_map(y, i) if output_fmt == "NCHW" else y)
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    @torch.jit.ignore
    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drop the stages after the last one `indices` takes, and the final norm and head where asked or where
        the stages they read are gone; returns the taken stage indices."""
        take, max_index = feature_take_indices(len(self.stages), indices)
        cut = max_index < len(self.stages) - 1
        self.stages, self.pools = self.stages[:max_index + 1], self.pools[:max_index]
        if prune_norm or cut:
            self.norm = nn.Identity()
        if cut:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or cut:
            self.reset_classifier(0, "")
        return take

    def forward_features(self, x: Tensor) -> Tensor:
        """Tokens after the final norm."""
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(self._enter(x, i))
        return self.norm(x)

    def _enter(self, x: Tensor, stage: int) -> Tensor:
        """The tokens entering `stage`: pooled by the pooling before it, if any."""
        for j, pool in enumerate(self.pools):  # TorchScript indexes module lists only with literals
            if j == stage - 1:
                x = pool(x)
        return x

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


__all__ = ["PSViT", "Stage", "Trunk"]

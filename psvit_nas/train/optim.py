"""AdamW's parameter groups and the per-step warmup + cosine schedule."""
from __future__ import annotations

import math
from typing import Any, Callable

from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on what the model's `no_weight_decay()` names and on every 1-D tensor (biases, norms),
    as timm's optimizer factory does."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(total: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    """The learning-rate factor of each step: linear warmup over `warmup` steps, then cosine to `min_ratio`."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return factor

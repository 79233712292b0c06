"""Exact analytic cost: MACs (attention matmuls included) and parameters.

FLOPs mean multiply-accumulates, as in DeiT, AutoFormer and SPOS: a Linear on N tokens
costs N*in*out MACs, QK^T and A.V cost N*N*C each, a convolution costs (output
positions)*(kernel volume)*(in)*(out). Norms, softmax, activations and pooling are free,
as in FlopCounterMode. Every cell's cost is tabulated once per space; an arch then costs
a sum of table entries.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import torch
from torch.utils.flop_counter import FlopCounterMode

from .limits import Limit
from .nn import explicit_attention

if TYPE_CHECKING:
    from .model import PSViT
    from .space import Arch, ArchSpec, SearchSpace


@dataclass(frozen=True)
class Cost:
    """MACs and params of one architecture, in total and per part (stem, stage1.., head)."""

    macs: int
    params: int
    parts: dict[str, tuple[int, int]]


def linear_cost(n: int, d_in: int, d_out: int) -> tuple[int, int]:
    return n * d_in * d_out, d_in * d_out + d_out


def sum_costs(*costs: tuple[int, int]) -> tuple[int, int]:
    return sum(c[0] for c in costs), sum(c[1] for c in costs)


def layer_cost(attention: tuple[int, int], n: int, c: int, mlp_ratio: float) -> tuple[int, int]:
    """A pre-norm layer around an attention cost: two LayerNorms and the MLP added."""
    hidden = int(c * mlp_ratio)
    return sum_costs(attention, linear_cost(n, c, hidden), linear_cost(n, hidden, c), (0, 4 * c))


def attention_cost(n: int, c: int) -> tuple[int, int]:
    """Multi-head self-attention on n tokens of width c: fused QKV, QK^T, A.V and the output projection."""
    return sum_costs(linear_cost(n, c, 3 * c), linear_cost(n, c, c), (2 * n * n * c, 0))


class CostTable:
    """Per-cell (MACs, params) for every stage and choice, plus the fixed parts, of one space."""

    def __init__(self, space: "SearchSpace") -> None:
        stages, shapes = space.stages, space.token_shapes
        patches = space.tokens(0) - int(space.has_cls)
        stem = sum_costs(linear_cost(patches, space.in_chans * space.patch_size ** 2, stages[0].width),
                    (0, space.tokens(0) * stages[0].width + int(space.has_cls) * stages[0].width))
        self.fixed: dict[str, tuple[int, int]] = {"stem": stem}
        for s in range(1, len(stages)):
            c_in, c_out = stages[s - 1].width, stages[s].width
            if space.pooling == "1d":  # conv1d (k=3, same length) on patch tokens, then max pool; CLS linear
                pool = sum_costs(linear_cost(space.tokens(s - 1) - 1, 3 * c_in, c_out), linear_cost(1, c_in, c_out))
            else:  # stride-2 3x3 conv, then LayerNorm
                pool = sum_costs(linear_cost(space.tokens(s), 9 * c_in, c_out), (0, 2 * c_out))
            self.fixed[f"stage{s + 1}"] = pool
        self.fixed["head"] = sum_costs(linear_cost(1, stages[-1].width, space.num_classes), (0, 2 * stages[-1].width))
        from .choices import CellArgs, cell_cost  # each choice's cost lives with the choice

        self.cells = [{c: cell_cost(c, CellArgs(st.width, st.heads, st.mlp_ratio, shapes[s], space.has_cls))
                       for c in st.choices} for s, st in enumerate(stages)]
        self.cell_macs = [{c: v[0] for c, v in stage.items()} for stage in self.cells]
        self.fixed_macs = sum(v[0] for v in self.fixed.values())
        self.macs_limit = Limit("MACs", "--flops", tuple(self.cell_macs), self.fixed_macs)
        self.macs_range = self.macs_limit.extremes(space)
        self.params_range = Limit("params", "", tuple({c: v[1] for c, v in stage.items()} for stage in self.cells),
                                  sum(v[1] for v in self.fixed.values())).extremes(space)

    def macs(self, arch: "Arch") -> int:
        """MACs of one arch: the fast path the search calls constantly."""
        return self.macs_limit.value(arch)

    def __call__(self, arch: "Arch") -> Cost:
        parts = {"stem": self.fixed["stem"]}
        for s, (table, stage) in enumerate(zip(self.cells, arch.stages)):
            parts[f"stage{s + 1}"] = sum_costs(self.fixed.get(f"stage{s + 1}", (0, 0)), *(table[c] for c in stage))
        parts["head"] = self.fixed["head"]
        macs, params = sum_costs(*parts.values())
        return Cost(macs, params, parts)


@lru_cache(maxsize=64)
def cost_table(space: "SearchSpace") -> CostTable:
    """The cost table of a space, built once."""
    return CostTable(space)


def count_cost(spec: "ArchSpec") -> Cost:
    """Exact MACs and params of an architecture spec."""
    return cost_table(spec.space)(spec.arch)


def flop_counter_macs(model: "PSViT") -> float:
    """The reference count: FlopCounterMode total / 2 for one image, attention as explicit matmuls."""
    space = model.space
    x = torch.zeros(1, space.in_chans, space.image_size, space.image_size)
    with torch.no_grad(), explicit_attention(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return counter.get_total_flops() / 2

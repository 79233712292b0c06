"""The cell choices, each in one place: its module, its exact cost and how many attention maps it yields.

A new choice is one `register_choice` (tests/test_cost.py registers a toy one); a space then lists it under
`choices`. Spaces that list none get the five of PSViT's space, `DEFAULT_CHOICES`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import nn

from .cost import attention_cost, layer_cost, linear_cost, sum_costs
from .nn import Attention, Block, IdentityCell, LSLAttention, ReAttention, SharePair, relative_index

Cost = tuple[int, int]  # (MACs, params)


@dataclass(frozen=True)
class CellArgs:
    """Where a cell sits: width, heads, MLP ratio, its stage's token shape (CLS excluded) and CLS token; how it
    trains: stochastic depth; DeepViT's options (`ReAttention`'s `transform_scale`, `Block`'s
    `scale_adjustment`)."""

    dim: int
    heads: int
    mlp_ratio: float
    token_shape: tuple[int, ...]
    cls_token: bool
    drop_path: float = 0.0
    transform_scale: bool = False
    scale_adjustment: float = 1.0

    @property
    def tokens(self) -> int:
        """The tokens the cell sees, CLS included."""
        return math.prod(self.token_shape) + int(self.cls_token)


@dataclass(frozen=True)
class CellChoice:
    """`build(args)` makes the cell; `cost(args)` is its exact (MACs, params); `maps`: the attention maps it
    yields (its attention layers, for the analysis)."""

    name: str
    build: Callable[[CellArgs], nn.Module]
    cost: Callable[[CellArgs], Cost]
    maps: int = 1


CELL_CHOICES: dict[str, CellChoice] = {}


def register_choice(choice: CellChoice) -> CellChoice:
    """Make a choice available to every space that lists it."""
    if choice.name in CELL_CHOICES or not choice.name.isidentifier():
        raise ValueError(f"cell choice {choice.name!r}: taken, or not a plain name")
    CELL_CHOICES[choice.name] = choice
    return choice


def cell_choice(name: str) -> CellChoice:
    """The registered choice `name`."""
    if name not in CELL_CHOICES:
        raise ValueError(f"unknown cell choice {name!r}")
    return CELL_CHOICES[name]


def make_cell(choice: str, args: CellArgs) -> nn.Module:
    """The module of one cell choice."""
    return cell_choice(choice).build(args)


def cell_cost(choice: str, args: CellArgs) -> Cost:
    """(MACs, params) of one cell."""
    return cell_choice(choice).cost(args)


def _attention_layer(a: CellArgs, attention: nn.Module) -> Block:
    return Block(a.dim, attention, a.mlp_ratio, a.drop_path, a.scale_adjustment)


def _layer_cost(a: CellArgs) -> Cost:
    return layer_cost(attention_cost(a.tokens, a.dim), a.tokens, a.dim, a.mlp_ratio)


def _share_cost(a: CellArgs) -> Cost:
    n, c = a.tokens, a.dim
    shared = sum_costs(linear_cost(n, c, c), linear_cost(n, c, c), (n * n * c, 0))  # V, proj, A.V
    return sum_costs(_layer_cost(a), layer_cost(shared, n, c, a.mlp_ratio))


def _reattn_cost(a: CellArgs) -> Cost:
    n, h = a.tokens, a.heads
    head_mix = (h * h * n * n, h * h + h + 2 * h)  # 1x1 conv over heads, BatchNorm affine
    return layer_cost(sum_costs(attention_cost(n, a.dim), head_mix), n, a.dim, a.mlp_ratio)


def _lsla_cost(a: CellArgs) -> Cost:
    n, c = a.tokens, a.dim
    _, table = relative_index(a.token_shape, a.cls_token)
    lsla = sum_costs(linear_cost(n, c, c), linear_cost(n, c, c), (2 * n * n * c, 3 * a.heads * table))  # tables
    return layer_cost(lsla, n, c, a.mlp_ratio)


for _builtin in (
    CellChoice("layer", lambda a: _attention_layer(a, Attention(a.dim, a.heads)), _layer_cost),
    CellChoice("share", lambda a: SharePair(a.dim, a.heads, a.mlp_ratio, a.drop_path, a.scale_adjustment),
               _share_cost, maps=2),
    CellChoice("identity", lambda a: IdentityCell(), lambda a: (0, 0), maps=0),
    CellChoice("reattn", lambda a: _attention_layer(a, ReAttention(a.dim, a.heads, transform_scale=a.transform_scale)),
               _reattn_cost),
    CellChoice("lsla", lambda a: _attention_layer(a, LSLAttention(a.dim, a.heads, a.token_shape, a.cls_token)),
               _lsla_cost),
):
    register_choice(_builtin)
DEFAULT_CHOICES = tuple(CELL_CHOICES)

__all__ = ["CellArgs", "CellChoice", "CELL_CHOICES", "DEFAULT_CHOICES", "cell_choice", "cell_cost", "make_cell",
           "register_choice"]

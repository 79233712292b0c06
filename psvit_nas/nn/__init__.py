"""Building blocks: attention variants, layers and cells, stem and token pooling."""
from .attention import (Attention, LSLAttention, ReAttention, SharedAttention, explicit_attention,
                        relative_index)
from .blocks import Block, IdentityCell, Mlp, SharePair, make_cell
from .tokens import Pool1d, Pool2d, Stem

__all__ = ["Attention", "SharedAttention", "ReAttention", "LSLAttention", "explicit_attention", "relative_index",
           "Block", "SharePair", "IdentityCell", "Mlp", "make_cell", "Stem", "Pool1d", "Pool2d"]

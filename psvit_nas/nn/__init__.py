"""Building blocks: attention variants, layers and cells, stem and token pooling."""
from .attention import (Attention, LSLAttention, ReAttention, ReAttentionMaps, SharedAttention,
                        explicit_attention, relative_index)
from .blocks import Block, IdentityCell, Mlp, SharedBlock, SharePair, layer_norm
from .tokens import Pool1d, Pool2d, Stem

__all__ = ["Attention", "SharedAttention", "ReAttention", "ReAttentionMaps", "LSLAttention",
           "explicit_attention", "relative_index", "Block", "SharedBlock", "SharePair", "layer_norm", "IdentityCell",
           "Mlp", "Stem", "Pool1d", "Pool2d"]

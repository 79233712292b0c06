"""Attention-redundancy analysis (DeepViT's metric): how alike are the attention maps of a model's layers?

For two layers with maps A and B of shape (batch, heads, N, N), the similarity is the cosine
between A[b, h, t, :] and B[b, h, t, :] (one token's attention over all tokens, in one head),
averaged over heads, tokens and images. Like is compared with like: every layer is compared on
its softmax map (Re-Attention's before the head mix); two Re-Attention layers are compared on
their final, head-mixed maps, which are signed and would be near-orthogonal to any softmax map.
Layers whose token counts differ (across a pooling step) are not compared; layers with different
head counts are compared on head-averaged maps. The two layers of a `share` pair hold one map by
construction and are counted apart from the adjacent pairs. Each layer's entropy relative to a
uniform map (1.0: uniform) tells near-uniform maps, alike without meaning much, from focused ones.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .choices import cell_choice
from .io import atomic_write_text, pyplot, save_figure
from .model import PSViT
from .nn import Attention, LSLAttention, ReAttentionMaps, SharedAttention, explicit_attention

ATTENTIONS = (Attention, SharedAttention, LSLAttention)  # ReAttention is an Attention


def layer_labels(model: PSViT) -> list[str]:
    """One label per attention layer, in forward order: 'stage.cell:choice', share pairs as a/b."""
    labels = []
    for s, stage in enumerate(model.spec.arch.stages, 1):
        for i, choice in enumerate(stage, 1):
            maps = cell_choice(choice).maps
            labels += [f"{s}.{i}:{choice}" + (f"-{'ab'[k]}" if maps > 1 else "") for k in range(maps)]
    return labels


@torch.no_grad()
def attention_maps(model: nn.Module, images: Tensor) -> list[Tensor | ReAttentionMaps]:
    """Every layer's (batch, heads, N, N) attention map of `model` (a PSViT, a cell) on `images`, in forward
    order (Re-Attention: both maps), collected from the attention modules' outputs."""
    maps: list[Tensor | ReAttentionMaps] = []
    hooks = [m.register_forward_hook(lambda _m, _in, out: maps.append(out[1])) for m in model.modules()
             if isinstance(m, ATTENTIONS)]
    try:
        with explicit_attention():  # every attention materialises its map
            model.eval()(images)
    finally:
        for hook in hooks:
            hook.remove()
    return maps


def softmax_map(m: Tensor | ReAttentionMaps) -> Tensor:
    return m.softmax if isinstance(m, ReAttentionMaps) else m


def relative_entropy(a: Tensor) -> float:
    """Mean entropy of each query's attention distribution over log(N): 1.0 for a uniform map."""
    n = a.shape[-1]
    if n < 2:
        return math.nan
    return (-(a * a.clamp_min(1e-12).log()).sum(-1).mean() / math.log(n)).item()


def map_similarity(a: Tensor, b: Tensor) -> float:
    """Mean per-head, per-token cosine similarity of two maps; NaN if their token counts differ."""
    if a.shape[-1] != b.shape[-1]:
        return math.nan
    if a.shape[1] != b.shape[1]:
        a, b = a.mean(dim=1, keepdim=True), b.mean(dim=1, keepdim=True)
    return F.cosine_similarity(a, b, dim=-1).mean().item()


def cross_head_similarity(a: Tensor) -> float:
    """Mean cosine similarity between the maps of every pair of distinct heads of one layer (NaN: one head)."""
    heads = a.shape[1]
    if heads < 2:
        return math.nan
    sims = [F.cosine_similarity(a[:, i], a[:, j], dim=-1).mean().item()
            for i in range(heads) for j in range(i + 1, heads)]
    return sum(sims) / len(sims)


def analyze(model: PSViT, images: Tensor, threshold: float = 0.8) -> dict[str, Any]:
    """Layer-by-layer and cross-head similarity, entropy, and the share of adjacent pairs above `threshold`."""
    maps = attention_maps(model, images)
    labels = layer_labels(model)
    n = len(maps)

    def compare(i: int, j: int) -> tuple[float, str]:
        if isinstance(maps[i], ReAttentionMaps) and isinstance(maps[j], ReAttentionMaps):
            return map_similarity(maps[i].mixed, maps[j].mixed), "reattn-mixed"
        return map_similarity(softmax_map(maps[i]), softmax_map(maps[j])), "softmax"

    pairs = [[compare(i, j) for j in range(n)] for i in range(n)]
    matrix = [[sim for sim, _ in row] for row in pairs]
    share_pair = [labels[i].endswith("share-a") and labels[i + 1].endswith("share-b") for i in range(n - 1)]
    adjacent = [matrix[i][i + 1] for i in range(n - 1) if not share_pair[i] and not math.isnan(matrix[i][i + 1])]
    above = sum(s > threshold for s in adjacent)
    return {
        "layers": labels, "similarity": matrix, "map_used": [[kind for _, kind in row] for row in pairs],
        "cross_head": [cross_head_similarity(softmax_map(m)) for m in maps],
        "entropy": [relative_entropy(softmax_map(m)) for m in maps],
        "threshold": threshold, "adjacent_pairs": len(adjacent), "adjacent_above": above,
        "adjacent_share_above": above / len(adjacent) if adjacent else math.nan,
        "share_pairs": sum(share_pair), "images": len(images), "arch": str(model.spec.arch),
    }


def write_report(result: dict[str, Any], out: str | Path) -> None:
    """attention_similarity.json (NaN as null) and attention_similarity.png (heatmap + per-layer curves)."""
    plt = pyplot()
    out = Path(out)
    clean = json.loads(json.dumps(result).replace("NaN", "null"))
    atomic_write_text(out / "attention_similarity.json", json.dumps(clean, indent=1))
    labels, n = result["layers"], len(result["layers"])
    sim = torch.tensor(result["similarity"])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5.5), gridspec_kw={"width_ratios": [1.2, 1]})
    low = min(0.0, float(sim.nan_to_num(0.0).min()))
    image = ax.imshow(sim.numpy(), vmin=low, vmax=1, cmap="viridis")
    for i in range(n):
        for j in range(n):
            if result["map_used"][i][j] == "reattn-mixed":
                ax.text(j, i, "R", ha="center", va="center", fontsize=6, color="w")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_title("attention-map similarity between layers: softmax maps;\n"
                 "R: two Re-Attention layers, compared on their head-mixed maps (blank: token counts differ)",
                 fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    bx.plot(range(n), result["cross_head"], marker="o", label="between heads of a layer")
    bx.plot(range(n), result["entropy"], marker="^", label="entropy / uniform map's")
    nxt = [i for i in range(n - 1) if not (labels[i].endswith("share-a") and labels[i + 1].endswith("share-b"))]
    bx.plot([i + 0.5 for i in nxt], [result["similarity"][i][i + 1] for i in nxt], marker="s", linestyle="none",
            label="with the next layer (share pairs left out: one map)")
    bx.axhline(result["threshold"], color="k", linestyle="--", linewidth=1, label=f"threshold {result['threshold']}")
    bx.set_xticks(range(n), labels, rotation=90, fontsize=7)
    bx.set_ylim(min(0.0, low), 1.05)
    bx.set_ylabel("cosine similarity / relative entropy")
    bx.set_title("per layer")
    bx.legend(fontsize=8)
    bx.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out / "attention_similarity.png")

"""Attention-redundancy analysis (DeepViT's metric): how alike are the attention maps of a model's layers?

For two layers with maps A and B of shape (batch, heads, N, N), the similarity is the cosine
between A[b, h, t, :] and B[b, h, t, :] (one token's attention over all tokens, in one head),
averaged over heads, tokens and images. Layers whose token counts differ (across a pooling
step) are not compared; layers with different head counts are compared on head-averaged maps.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .io import atomic_write_text, pyplot, save_figure
from .model import PSViT


def layer_labels(model: PSViT) -> list[str]:
    """One label per attention layer, in forward order: 'stage.cell:choice', share pairs as a/b."""
    labels = []
    for s, stage in enumerate(model.spec.arch.stages, 1):
        for i, choice in enumerate(stage, 1):
            if choice == "share":
                labels += [f"{s}.{i}:share-a", f"{s}.{i}:share-b"]
            elif choice != "identity":
                labels.append(f"{s}.{i}:{choice}")
    return labels


@torch.no_grad()
def attention_maps(model: PSViT, images: Tensor) -> list[Tensor]:
    """Every layer's (batch, heads, N, N) attention map on `images`, in forward order."""
    maps: list[Tensor] = []
    model.eval().forward_features(images, maps)
    return maps


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
    """Layer-by-layer and cross-head similarity, and the share of adjacent comparable pairs above `threshold`."""
    maps = attention_maps(model, images)
    n = len(maps)
    matrix = [[map_similarity(maps[i], maps[j]) for j in range(n)] for i in range(n)]
    adjacent = [matrix[i][i + 1] for i in range(n - 1) if not math.isnan(matrix[i][i + 1])]
    above = sum(s > threshold for s in adjacent)
    return {
        "layers": layer_labels(model), "similarity": matrix,
        "cross_head": [cross_head_similarity(m) for m in maps],
        "threshold": threshold, "adjacent_pairs": len(adjacent), "adjacent_above": above,
        "adjacent_share_above": above / len(adjacent) if adjacent else math.nan,
        "images": len(images), "arch": str(model.spec.arch),
    }


def write_report(result: dict[str, Any], out: str | Path) -> None:
    """attention_similarity.json (NaN as null) and attention_similarity.png (heatmap + cross-head curve)."""
    plt = pyplot()
    out = Path(out)
    clean = json.loads(json.dumps(result).replace("NaN", "null"))
    atomic_write_text(out / "attention_similarity.json", json.dumps(clean, indent=1))
    labels, n = result["layers"], len(result["layers"])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 5.5), gridspec_kw={"width_ratios": [1.2, 1]})
    image = ax.imshow(torch.tensor(result["similarity"]).numpy(), vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_title("attention-map similarity between layers\n(blank: token counts differ)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    bx.plot(range(n), result["cross_head"], marker="o", label="between heads of a layer")
    bx.plot([i + 0.5 for i in range(n - 1)], [result["similarity"][i][i + 1] for i in range(n - 1)], marker="s",
            label="with the next layer")
    bx.axhline(result["threshold"], color="k", linestyle="--", linewidth=1, label=f"threshold {result['threshold']}")
    bx.set_xticks(range(n), labels, rotation=90, fontsize=7)
    bx.set_ylim(0, 1.05)
    bx.set_ylabel("cosine similarity")
    bx.set_title("cross-head and adjacent-layer similarity")
    bx.legend(fontsize=8)
    bx.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out / "attention_similarity.png")

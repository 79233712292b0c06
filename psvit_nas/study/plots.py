"""The study report's plots: each reads the analysis (`results.analyse`) and writes one PNG."""
from __future__ import annotations

from pathlib import Path

from ..io import new_figure, save_figure
from .stats import value


def scatter(result: dict, sampler: str, path: Path) -> bool:
    """Each architecture's supernet fitness against its retrained accuracy, one marker per seed, coloured by
    MACs; False (no plot) when no architecture was scored by `sampler`."""
    rows = [r for r in result["rows"] if f"fitness_{sampler}" in r]
    if not rows:
        return False
    fig, ax = new_figure(6, 4.5)
    for r in rows:
        x = r[f"fitness_{sampler}"]
        ax.plot([x, x], [min(r["seeds"]), max(r["seeds"])], color="0.7", lw=1, zorder=1)
    for k, marker in zip(range(len(result["seeds"])), "os^v"):
        points = ax.scatter([r[f"fitness_{sampler}"] for r in rows], [r["seeds"][k] for r in rows],
                            c=[r["macs"] / 1e6 for r in rows], cmap="viridis", marker=marker, s=36, zorder=2,
                            label=f"seed {result['seeds'][k]}", edgecolors=["red" if r["group"] == "window" else
                                                                           "none" for r in rows])
    fig.colorbar(points, ax=ax, label="MACs (M)")
    ax.set_xlabel(f"inherited-weight fitness, {sampler} supernet (held-out train top-1 %)")
    ax.set_ylabel("retrained from scratch: val top-1 (%)")
    ax.set_title("supernet ranking against retraining (red edge: budget window)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    return True


def progress_plot(progress: dict[str, list[dict]], path: Path) -> None:
    """Kendall tau of each supernet against retraining, across the space and inside the window, as it trains."""
    fig, ax = new_figure(6.5, 4)
    for k, (sampler, points) in enumerate(progress.items()):
        for scope, style in (("all", "-o"), ("window", "--s")):  # one colour per sampler
            defined = [(p["compute"], value(p[scope])) for p in points if value(p[scope]) is not None]
            ax.plot([e for e, _ in defined], [t for _, t in defined], style, color=f"C{k}",
                    label=f"{sampler} ({'across the space' if scope == 'all' else 'inside the window'})")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("supernet compute (uniform-path epochs of images)")
    ax.set_ylabel("Kendall tau against retraining")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def curves_plot(runs: dict[str, dict], path: Path) -> None:
    """Every retraining's validation top-1 after each epoch; named extras bold and labelled."""
    fig, ax = new_figure(7.5, 4.5)
    colors = {"spread": "tab:blue", "window": "tab:orange"}
    for key, run in sorted(runs.items()):
        ax.plot(range(1, len(run["curve"]) + 1), run["curve"], color=colors.get(run["group"], "tab:green"),
                lw=2 if run["group"] not in colors else 0.8, alpha=0.8,
                label=key if run["group"] not in colors else None)
    for group, color in colors.items():
        ax.plot([], [], color=color, label=group)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(f"learning curves of {len(runs)} retrainings")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)


__all__ = ["curves_plot", "progress_plot", "scatter"]

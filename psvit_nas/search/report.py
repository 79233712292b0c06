"""What a search leaves behind for people: plots and a summary table."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..io import pyplot, save_figure
from ..space import format_macs
from .loop import Record


def plot_progress(history: Sequence[Record], path: Path, title: str) -> None:
    """Best-so-far and mean fitness per generation."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    generations = sorted({r.generation for r in history})
    mean = [sum(r.fitness for r in history if r.generation == g) /
            max(1, sum(1 for r in history if r.generation == g)) for g in generations]
    best, so_far = [], float("-inf")
    for g in generations:
        so_far = max([so_far] + [r.fitness for r in history if r.generation == g])
        best.append(so_far)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(generations, best, marker="o", label="best so far")
    ax.plot(generations, mean, marker=".", label="mean of new candidates")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness: top-1 on held-out training images (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def plot_pareto(history: Sequence[Record], front: Sequence[Record], path: Path, title: str,
                budget: float | None = None, by_latency: bool = False) -> None:
    """Accuracy against MACs (or predicted latency) of everything evaluated, the Pareto front highlighted."""
    plt = pyplot()
    cost = (lambda r: r.latency_ms) if by_latency else (lambda r: r.macs / 1e6)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([cost(r) for r in history], [r.fitness for r in history], s=12, alpha=0.5, label="evaluated")
    ax.plot([cost(r) for r in front], [r.fitness for r in front], color="C3", marker="o", label="Pareto front")
    if budget:
        label = f"budget {budget:.3g} ms" if by_latency else f"budget {format_macs(budget)}"
        ax.axvline(budget if by_latency else budget / 1e6, color="k", linestyle="--", linewidth=1, label=label)
    ax.set_xlabel("predicted latency (ms)" if by_latency else "MACs (M)")
    ax.set_ylabel("fitness: top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def summary(history: Sequence[Record], front: Sequence[Record], best: Record, top: int = 5) -> str:
    """The top candidates and the Pareto front as a text table."""
    timed = history[0].latency_ms is not None
    lines = [f"{len(history)} architectures evaluated over {1 + max(r.generation for r in history)} generations",
             f"{'':<6}{'fitness':>9}{'MACs':>10}{'params':>10}" + (f"{'latency':>11}" if timed else "") + "  arch"]
    ranked = sorted(history, key=lambda r: (-r.fitness, r.macs))[:top]
    for label, rows in (("top", ranked), ("front", front)):
        for r in rows:
            mark = "*" if r is best else " "
            latency = f"{r.latency_ms:>8.3g} ms" if timed else ""
            lines.append(f"{label:<5}{mark}{r.fitness:>9.2f}{format_macs(r.macs):>10}{r.params / 1e6:>9.3f}M"
                         f"{latency}  {r.arch}")
    return "\n".join(lines)

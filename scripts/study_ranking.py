"""Can the supernet's ranking be trusted? A study on real images.

1. Train a supernet by SPOS, holding out part of the training images for the search.
2. Pick N architectures spread over the space's MACs range, score each with inherited
   weights on the held-out training images, retrain each from scratch for E epochs and
   measure validation top-1; report Kendall tau and Spearman rho between the rankings.
3. Run evolution and random search at equal evaluation counts on the same supernet;
   report the best fitness of each and the retrained accuracy of both winners.
4. Write the numbers, plots and the exact command to docs/results.md.

    python scripts/study_ranking.py                      # PSVIT_NAS_TEST_DATA, tiny_imagenet.yaml
    python scripts/study_ranking.py --data digits --config search_spaces/digits.yaml --archs 3 --epochs 1 \
        --supernet-epochs 1 --population 4 --generations 2 --out /tmp/study --results /tmp/study/results.md
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import torch
from scipy import stats
from torch.utils.data import Subset

from psvit_nas import Arch, PSViT, SearchSpace, Supernet, format_macs
from psvit_nas.io import pyplot, save_figure
from psvit_nas.data import Augment, holdout_split, load_images
from psvit_nas.search import Evaluator, FitnessSet, SearchConfig, evolve
from psvit_nas.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]


def spread_archs(space: SearchSpace, n: int, seed: int) -> list:
    """n distinct archs at evenly spaced MACs quantiles of 4,000 uniform samples."""
    rng = random.Random(seed)
    pool = sorted({space.sample(rng) for _ in range(4000)}, key=space.cost_table.macs)
    return [pool[round(i * (len(pool) - 1) / max(1, n - 1))] for i in range(n)]


def retrain(space, arch, train_set, val_set, args, out: Path, aug) -> float:
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.retrain_lr,
                      warmup_epochs=min(1, args.epochs / 2),
                      seed=args.seed, augment=aug.to_dict(), workers=args.workers)
    torch.manual_seed(args.seed)
    last = fit(PSViT.from_spec(space.spec(arch)), space, train_set, val_set, cfg, out, arch=arch)
    return last["val_top1"]


def scatter(fitness, accuracy, macs, path: Path, tau: float, rho: float) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    points = ax.scatter(fitness, accuracy, c=[m / 1e6 for m in macs], cmap="viridis", s=40)
    fig.colorbar(points, ax=ax, label="MACs (M)")
    ax.set_xlabel("inherited-weight fitness: top-1 on held-out train images (%)")
    ax.set_ylabel("retrained from scratch: validation top-1 (%)")
    ax.set_title(f"supernet ranking vs retrained ranking\nKendall tau {tau:.2f}, Spearman rho {rho:.2f}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("PSVIT_NAS_TEST_DATA"))
    parser.add_argument("--config", default=str(ROOT / "search_spaces" / "tiny_imagenet.yaml"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "study"))
    parser.add_argument("--results", default=str(ROOT / "docs" / "results.md"))
    parser.add_argument("--supernet-epochs", type=int, default=16)
    parser.add_argument("--holdout", type=int, default=1000, help="training images held out for the search")
    parser.add_argument("--archs", type=int, default=8, help="architectures retrained for the ranking")
    parser.add_argument("--epochs", type=int, default=6, help="retraining epochs per architecture")
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3, help="supernet learning rate")
    parser.add_argument("--retrain-lr", type=float, default=1e-3,
                        help="learning rate of the from-scratch retraining (2e-3 left deep paths untrained)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data:
        parser.error("--data is required when PSVIT_NAS_TEST_DATA is not set")
    started = time.time()
    out = Path(args.out)
    space = SearchSpace.from_yaml(args.config)
    aug = Augment.preset("auto", space.image_size)
    train_full = load_images(args.data, "train", space)
    val_set = load_images(args.data, "val", space)
    keep, _ = holdout_split(len(train_full), args.holdout)
    train_set = Subset(train_full, keep)

    # 1. the supernet
    torch.manual_seed(args.seed)
    sn_cfg = TrainConfig(epochs=args.supernet_epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         augment=aug.to_dict(), workers=args.workers, val_archs=2)
    net = Supernet(space)
    fit(net, space, train_set, val_set, sn_cfg, out / "supernet",
        run_config={"data": args.data, "data_dir": "data", "search_holdout": args.holdout})
    fitness_set = FitnessSet(args.data, "data", args.holdout, args.holdout, 10, 128)
    batches, calib = fitness_set.load(space)
    evaluator = Evaluator(net, batches, calib)

    # 2. ranking: inherited fitness against retrained accuracy
    rows = []
    for i, arch in enumerate(spread_archs(space, args.archs, args.seed)):
        print(f"[ranking {i + 1}/{args.archs}] {arch}", flush=True)
        inherited = evaluator.metrics(arch)
        rows.append({"arch": str(arch), "macs": space.cost_table.macs(arch), "fitness": inherited["top1"],
                     "fitness_loss": inherited["loss"],
                     "retrained": retrain(space, arch, train_set, val_set, args, out / f"arch{i}", aug)})
    fitness, accuracy = [r["fitness"] for r in rows], [r["retrained"] for r in rows]
    tau = stats.kendalltau(fitness, accuracy).statistic
    rho = stats.spearmanr(fitness, accuracy).statistic
    # The same rankings with the held-out loss (lower is better) as the score: a smoother proxy than top-1.
    tau_loss = stats.kendalltau([-r["fitness_loss"] for r in rows], accuracy).statistic
    out.mkdir(parents=True, exist_ok=True)
    scatter(fitness, accuracy, [r["macs"] for r in rows], out / "ranking.png", tau, rho)

    # 3. evolution against random search at equal evaluations, budget at the median MACs
    budget = sorted(space.cost_table.macs(space.sample(random.Random(1))) for _ in range(2000))[1000]
    search_cfg = dict(population=args.population, generations=args.generations, topk=max(2, args.population // 5),
                      max_macs=budget, seed=args.seed)
    winners = {}
    for strategy in ("evolution", "random"):
        search = evolve(str(out / "supernet" / "last.pt"), SearchConfig(strategy=strategy, **search_cfg), fitness_set,
                        out / strategy)
        best = search.best
        winners[strategy] = {"arch": best.arch, "fitness": best.fitness, "macs": best.macs,
                             "evaluations": len(search.state.history)}
    for strategy, w in winners.items():
        print(f"[winner] {strategy}: {w['arch']}", flush=True)
        w["retrained"] = retrain(space, Arch.parse(w["arch"]), train_set, val_set, args, out / f"winner-{strategy}",
                                 aug)
    summary = {"tau": tau, "rho": rho, "tau_loss": tau_loss, "rows": rows, "winners": winners, "budget": budget,
               "minutes": (time.time() - started) / 60, "args": vars(args)}
    (out / "study.json").write_text(json.dumps(summary, indent=1))
    write_results(Path(args.results), summary, out, space)
    print(f"Kendall tau {tau:.3f}, Spearman rho {rho:.3f}; results in {args.results}")


def cell(arch: str) -> str:
    """An arch string inside a Markdown table cell (stage separators escaped)."""
    return arch.replace("|", "\\|")


def write_results(path: Path, s: dict, out: Path, space: SearchSpace) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "ranking.png", path.parent / "study_ranking.png")
    shutil.copy(out / "evolution" / "progress.png", path.parent / "study_evolution_progress.png")
    a = s["args"]
    lines = [
        "# Search quality on real images",
        "",
        f"Written by `scripts/study_ranking.py` in {s['minutes']:.0f} minutes on this machine (2 CPU cores).",
        "Rerun with:",
        "",
        "```bash",
        "python " + " ".join(sys.argv),
        "```",
        "",
        f"Data: `{a['data']}`; space `{space.name}`; supernet trained {a['supernet_epochs']} epochs by SPOS with "
        f"{a['holdout']} training images held out for the search; each architecture retrained from scratch for "
        f"{a['epochs']} epochs (batch {a['batch_size']}, lr {a['retrain_lr']}).",
        "",
        "## Ranking: inherited weights against retraining",
        "",
        f"**Kendall τ = {s['tau']:.3f}, Spearman ρ = {s['rho']:.3f}** over {len(s['rows'])} architectures "
        f"spread over the MACs range (with the held-out loss instead of top-1 as the score: τ = "
        f"{s['tau_loss']:.3f}).",
        "",
        "| arch | MACs | fitness (held-out train top-1 %) | held-out loss | retrained (val top-1 %) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| `{cell(r['arch'])}` | {format_macs(r['macs'])} | {r['fitness']:.2f} | {r['fitness_loss']:.3f} | "
              f"{r['retrained']:.2f} |" for r in s["rows"]]
    lines += ["", "![ranking](study_ranking.png)", "",
              f"## Evolution against random search (budget {format_macs(s['budget'])} MACs, equal evaluations)", "",
              "| strategy | evaluations | best fitness | MACs | retrained val top-1 | arch |",
              "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {k} | {w['evaluations']} | {w['fitness']:.2f} | {format_macs(w['macs'])} | {w['retrained']:.2f} | "
              f"`{cell(w['arch'])}` |" for k, w in s["winners"].items()]
    lines += ["", "![evolution progress](study_evolution_progress.png)", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()

"""`tune`: search the retraining recipe of one architecture with Ray Tune and ASHA."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from ..io import atomic_write_text
from ..space import ArchSpec
from ..train import TrainConfig
from .trials import TrialSetup, plot_curves, run_experiment, write_table

SEARCHED = ["lr", "weight_decay", "warmup_epochs", "label_smoothing", "mixup", "cutmix"]


def default_recipe(spec: ArchSpec) -> dict[str, Any]:
    """What `psvit-nas train` uses when given no recipe (the augmentation preset of the image size)."""
    from ..data import Augment

    aug, cfg = Augment.preset("auto", spec.space.image_size), TrainConfig()
    return {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "warmup_epochs": cfg.warmup_epochs,
            "label_smoothing": aug.label_smoothing, "mixup": aug.mixup, "cutmix": aug.cutmix}


def recipe_space() -> dict[str, Any]:
    """The distributions searched (random search; ASHA stops the clearly worse trials)."""
    from ray import tune

    return {"lr": tune.loguniform(2e-4, 4e-3), "weight_decay": tune.loguniform(0.01, 0.3),
            "warmup_epochs": tune.choice([0.0, 0.5, 1.0, 2.0]), "label_smoothing": tune.uniform(0.0, 0.2),
            "mixup": tune.choice([0.0, 0.2, 0.8]), "cutmix": tune.choice([0.0, 1.0])}


def tune_recipe(spec: ArchSpec, fitness: dict[str, Any], samples: int, setup_args: dict[str, Any],
                out: str | Path, resume: bool = False, ray_address: str | None = None,
                source: str | None = None) -> dict[str, Any]:
    """Run `samples` recipes (the first is the default) on `spec`; write recipe.yaml, trials.csv, the curves."""
    out = Path(out)
    setup = TrialSetup(fitness=fitness, **setup_args)
    default = default_recipe(spec)
    rows = run_experiment({"spec": spec.to_dict(), **recipe_space()}, samples, setup, out, resume, ray_address,
                          points=[default], columns={k: k for k in SEARCHED})
    for row in rows:
        r = row["recipe"]
        row["label"] = "default" if r == default else (
            f"lr {r['lr']:.1e} wd {r['weight_decay']:.2g} ls {r['label_smoothing']:.2f} "
            f"mix {r['mixup']:g}/{r['cutmix']:g}")
    winner = rows[0]
    baseline = next((r for r in rows if r["recipe"] == default), None)
    result = {"recipe": {k: float(v) for k, v in winner["recipe"].items()},
              "score": winner["score"], "default_score": baseline["score"] if baseline else None,
              "default_epochs": baseline["epochs"] if baseline else None,
              # like with like: ASHA may stop the default early, so the winner's score at the default's last epoch
              "score_at_default_epochs": winner["curve"][baseline["epochs"] - 1] if baseline and
              0 < baseline["epochs"] <= len(winner["curve"]) else None, "epochs": setup.epochs,
              "trials": len(rows), "arch": str(spec.arch), "held_out": fitness, "arch_spec": source,
              "command": " ".join(sys.argv)}
    atomic_write_text(out / "recipe.yaml", "# psvit-nas retraining recipe: psvit-nas train --recipe recipe.yaml\n" +
                      yaml.safe_dump(result, sort_keys=False))
    write_table(rows, out / "trials.csv", SEARCHED)
    plot_curves(rows, out / "learning_curves.png", f"tune: {len(rows)} recipes for {spec.arch}, "
                f"{setup.epochs} epochs")
    print(f"{'':<3}{'held-out top-1':>15}{'epochs':>8}  recipe")
    for i, r in enumerate(rows):
        print(f"{'*' if i == 0 else '':<3}{r['score']:>15.2f}{r['epochs']:>8}  {r['label']}")
    if result["score_at_default_epochs"] is not None and winner is not baseline:
        print(f"at epoch {baseline['epochs']}, the default's last: best {result['score_at_default_epochs']:.2f}, "
              f"default {baseline['score']:.2f}")
    print(f"best recipe -> {out / 'recipe.yaml'}; retrain with psvit-nas train --arch ... --recipe "
          f"{out / 'recipe.yaml'}")
    return result

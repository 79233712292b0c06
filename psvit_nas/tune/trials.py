"""Ray Tune trials that retrain an architecture from scratch, reporting per epoch its top-1 on held-out
TRAINING images (a `FitnessSet`), never on the validation set accuracy is reported on.

Each trial trains in its own run folder under OUT/trials/<digest of its configuration> with the
shared training loop, so a trial that Tune restarts after a kill, or a fresh experiment that tries
the same configuration again, continues from its last epoch checkpoint and first re-reports the
epochs it had done. ASHA stops the clearly worse trials at its rungs.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from ..cluster import ray_session
from ..data import CacheConfig, holdout_split, load_images
from ..errors import ConfigError
from ..io import atomic_write_text, pyplot, save_figure
from ..space import ArchSpec
from ..train.recipe import FIELDS, train_config


class TrialsFailed(RuntimeError):
    """Some trials of an experiment raised; the others' results are kept for --resume."""


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of one experiment shares."""

    fitness: dict[str, Any]     # FitnessSet fields: the training data and which images are held out to score
    epochs: int
    seed: int
    cache: CacheConfig
    threads: int = 1
    grace_epochs: int = 0       # ASHA's first rung; 0: half the epochs (few trials decide poorly after one)

    def __post_init__(self) -> None:
        # trials run in Tune's own working folders: relative data paths must not depend on the cwd
        paths = {k: str(Path(self.fitness[k]).resolve()) for k in ("data", "data_dir")
                 if self.fitness.get(k) and Path(self.fitness[k]).exists()}
        object.__setattr__(self, "fitness", {**self.fitness, **paths})


def held_out_split(spec: ArchSpec, fitness: dict[str, Any], cache: CacheConfig):
    """(training images without the held-out ones, the first `size` held-out images) of the search's data."""
    train = load_images(fitness["data"], "train", spec.space, fitness["data_dir"], cache)
    keep, held = holdout_split(len(train), fitness["holdout"])
    return Subset(train, keep), Subset(train, held[: fitness["size"]])


def run_trial(config: dict[str, Any], setup: TrialSetup, root: str) -> None:
    """The Tune trainable: train config["spec"] with the recipe in `config`, reporting each epoch's score."""
    from ray import tune

    from ..model import PSViT
    from ..train import fit

    torch.set_num_threads(setup.threads)
    spec = ArchSpec.from_dict(config["spec"])
    recipe = {k: v for k, v in config.items() if k in FIELDS}
    folder = trial_folder(root, config)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "trial.json", json.dumps({"arch": str(spec.arch), "recipe": recipe,
                                                         "search_rank": spec.metrics.get("search_rank")}))

    def report(metrics: dict[str, Any]) -> None:
        tune.report({"score": metrics["val_top1"], "held_out_loss": metrics["val_loss"],
                     "train_loss": metrics["train_loss"], "epoch": metrics["epoch"]})

    resume = (folder / "last.pt").is_file()
    if resume:  # Tune restarted this trial: give it back the epochs already done
        done = torch.load(folder / "last.pt", map_location="cpu", weights_only=True)["epoch"] + 1
        for row in read_metrics(folder):
            if row["epoch"] <= done:
                report(row)
    train_set, held = held_out_split(spec, setup.fitness, setup.cache)
    torch.manual_seed(setup.seed)
    fit(PSViT.from_spec(spec), spec.space, train_set, held, train_config(
        spec.space, {**recipe, "epochs": setup.epochs, "seed": setup.seed}), folder, arch=spec.arch,
        resume=resume, run_config={"held_out": setup.fitness, "recipe": recipe}, on_epoch=report)


def trial_folder(root: str | Path, config: dict[str, Any]) -> Path:
    """The run folder of the trial that trains `config`: named by its digest, not by Tune's trial id."""
    text = json.dumps(config, sort_keys=True, default=str)
    return Path(root) / hashlib.sha1(text.encode()).hexdigest()[:12]


def restorable(experiment: Path) -> bool:
    """Whether Tune can continue `experiment`: its newest state file exists and parses (a kill can
    truncate it mid-write; Tune then restores trials without their configurations)."""
    from ray import tune

    states = sorted(experiment.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not tune.Tuner.can_restore(str(experiment)) or not states:
        return False
    try:
        json.loads(states[-1].read_text())
    except (OSError, ValueError):
        return False
    return True


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def run_experiment(param_space: dict[str, Any], samples: int, setup: TrialSetup, out: str | Path,
                   resume: bool = False, ray_address: str | None = None,
                   points: list[dict[str, Any]] | None = None,
                   columns: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Run (or, with `resume`, continue) the trials under ASHA; return every trial's row (see `trial_rows`).

    `points` are configurations tried first (e.g. the default recipe), before random samples; `columns`
    the configuration entries the progress table shows (config key -> heading)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    out = Path(out).resolve()
    experiment = out / "tune"
    if resume and not restorable(experiment):  # killed before (or while) Tune saved it: start it afresh
        print(f"psvit-nas: no readable Ray Tune experiment in {out}; starting it again (finished trials are "
              "kept: their folders are named by configuration)", file=sys.stderr)
        resume = False
        shutil.rmtree(experiment, ignore_errors=True)
    if not resume and experiment.exists():
        raise ConfigError(str(out), None, "already holds an experiment; add --resume to continue it, or choose "
                          "another --out")
    gpu = torch.cuda.is_available()
    resources = {"cpu": setup.threads, "gpu": 1 if gpu else 0}
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup, root=str(out / "trials")),
                                    resources)
    reporter = tune.CLIReporter(metric_columns={"epoch": "epoch", "score": "held-out top-1"},
                                parameter_columns=columns or {}, max_report_frequency=30, sort_by_metric=True)
    with ray_session(ray_address):
        if resume:
            tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, resume_errored=True)
        else:
            scheduler = ASHAScheduler(time_attr="epoch", max_t=setup.epochs, reduction_factor=2,
                                      grace_period=setup.grace_epochs or max(1, setup.epochs // 2))
            tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune.TuneConfig(
                metric="score", mode="max", num_samples=samples, scheduler=scheduler, reuse_actors=True,
                search_alg=tune.search.BasicVariantGenerator(points_to_evaluate=points,
                                                             random_state=setup.seed)),
                run_config=tune.RunConfig(name="tune", storage_path=str(out), verbose=1,
                                          progress_reporter=reporter))
        grid = tuner.fit()
    failed = [r for r in grid if r.error]
    if failed:
        last = str(failed[0].error).strip().splitlines()[-1]
        raise TrialsFailed(f"{len(failed)} of {len(grid)} trials failed; the first, in {failed[0].path}: {last}; "
                           "fix the cause and add --resume to rerun them")
    return trial_rows(out / "trials", setup.epochs)


def trial_rows(root: Path, epochs: int) -> list[dict[str, Any]]:
    """One row per trial folder: arch, recipe, search rank, curve, epochs done and final score; best first."""
    rows = []
    for folder in sorted(p for p in root.iterdir() if (p / "trial.json").is_file()):
        info = json.loads((folder / "trial.json").read_text())
        curve = [m["val_top1"] for m in read_metrics(folder)]
        rows.append({**info, "trial": folder.name, "epochs": len(curve), "completed": len(curve) >= epochs,
                     "score": curve[-1] if curve else float("nan"), "curve": curve})
    return sorted(rows, key=lambda r: (not r["completed"], -r["score"] if r["curve"] else 0.0))


def plot_curves(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Every trial's held-out top-1 per epoch; the winner (first row) drawn bold."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, row in enumerate(rows):
        epochs = range(1, len(row["curve"]) + 1)
        ax.plot(epochs, row["curve"], marker="o", linewidth=2.5 if i == 0 else 1, alpha=1 if i == 0 else 0.6,
                label=row["label"] + (" (winner)" if i == 0 else "" if row["completed"] else " (stopped by ASHA)"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("top-1 on held-out training images (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def write_table(rows: list[dict[str, Any]], path: Path, fields: list[str]) -> None:
    """trials.csv: one line per trial, best first."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["rank", "trial", "label", "score", "epochs", "completed", *fields, "curve"])
    for i, r in enumerate(rows, 1):
        writer.writerow([i, r["trial"], r["label"], f"{r['score']:.3f}", r["epochs"], r["completed"],
                         *(r["recipe"].get(f, r.get(f, "")) for f in fields),
                         " ".join(f"{v:.2f}" for v in r["curve"])])
    atomic_write_text(path, buf.getvalue())

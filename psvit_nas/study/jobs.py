"""The study's jobs: one typed key each, and the three kinds that run as Ray Tune trials (retraining an
architecture, training a supernet, scoring architectures with a supernet's inherited weights).

Every job trains or scores through the library (`fit_on`, `Evaluator`), in its own run folder under the study's
work folder, checkpointing every 50 steps, so a job killed mid-way continues where it stopped. A finished job
leaves its record (see `records.Records`).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import CacheConfig, EvalBatches, load_images
from ..errors import ConfigError
from ..space import Arch, SearchSpace
from ..train.config import TrainConfig
from .records import Records
from .settings import StudySettings
from .stats import pack

CHECKPOINT_EVERY = 50  # steps: what a killed job loses at most

# Other ways to score the first sampler's supernet: what else moves tau.
VARIANTS: dict[str, dict[str, float]] = {"": {}, "third": {"share": 1 / 3}, "nobn": {"bn_batches": 0},
                                         "x2": {"scale": 2}}
VARIANT_LABELS = {"loss": "ranked by held-out loss instead of top-1", "third": "a third of the held-out images",
                  "nobn": "no BatchNorm recalibration (the supernet's running statistics)",
                  "x2": "twice the supernet training (same sampler, twice the epochs)"}


@dataclass(frozen=True)
class Job:
    """One unit of the study's work. `key` names its record and its run folder; the payload (`arch`, `recipe`,
    `archs`) says what it works on and is not part of its identity."""

    kind: str                    # retrain | supernet | fitness | proxy | finetune | search | finalize | tune
    name: str = ""               # retrain: the architecture's name; supernet, fitness, finetune: sampler; proxy: its
    #                              name (rankers.proxies); search: strategy
    seed: int | None = None      # retrain
    epochs: int | None = None    # retrain: a schedule other than the study's; fitness: a supernet checkpoint
    scale: int = 1               # supernet: times the study's supernet compute
    variant: str = ""            # fitness: one of VARIANTS
    arch: str = field(default="", compare=False)           # retrain: what it trains
    recipe: dict[str, float] | None = field(default=None, compare=False)  # retrain: the tuned recipe (tune's record)
    archs: tuple[str, ...] = field(default=(), compare=False)  # fitness, proxy, finetune: what it scores

    @property
    def key(self) -> str:
        if self.kind == "retrain":
            return f"retrain-{self.name}-seed{self.seed}" + (f"-e{self.epochs}" if self.epochs else "")
        if self.kind == "supernet":
            return f"supernet-{self.name}" + (f"-x{self.scale}" if self.scale != 1 else "")
        if self.kind == "fitness":  # epochs: a supernet checkpoint before the last
            return f"fitness-{self.name}" + (f"-{self.variant}" if self.variant else "") + \
                (f"-ep{self.epochs}" if self.epochs else "")
        if self.kind in ("search", "proxy", "finetune"):
            return f"{self.kind}-{self.name}"
        return self.kind

    @property
    def scores(self) -> bool:
        """Whether the job scores architectures (its record maps each to its scores, filled in as it goes)."""
        return self.kind in ("fitness", "proxy", "finetune")

    @property
    def supernet(self) -> "Job":
        """A fitness or finetune job's supernet."""
        return Job("supernet", self.name, scale=int(VARIANTS[self.variant].get("scale", 1)))


@dataclass(frozen=True)
class Setup:
    """What every job of one study shares; trials receive it whole (plain, picklable values)."""

    settings: StudySettings
    config: str      # the space's YAML file, an absolute path (trials run in folders of their own)
    data: str        # the class subset supernets train on
    gt_data: str     # the ground truth's folder retrainings train and are scored on
    work: str        # run folders
    records: str     # records folder
    threads: int = 1

    @cached_property
    def space(self) -> SearchSpace:
        return SearchSpace.from_yaml(self.config)

    def folder(self, job: Job) -> Path:
        return Path(self.work) / job.key

    def cost(self, job: Job) -> float:
        """Relative compute of a training job (MACs x epochs): trials start longest first, so that the last ones
        running, when cores fall idle, are short."""
        s, table = self.settings, self.space.cost_table
        if job.kind == "retrain":
            return table.macs(Arch.parse(job.arch)) * (job.epochs or s.epochs)
        if job.kind == "supernet":
            return sum(table.macs_range) / 2 * s.supernet_epochs * job.scale
        return 0.0

    def estimate_images(self, job: Job, train_images: int) -> float:
        """Images a job forwards (for the time estimate): retrainings and supernets only."""
        s = self.settings
        if job.kind == "retrain":
            return (job.epochs or s.epochs) * train_images
        if job.kind == "supernet":
            return s.supernet_epochs * job.scale * train_images
        return 0.0


def run_job(setup: Setup, job: Job) -> dict[str, Any]:
    """Run a retraining, supernet or scoring job (continuing its run folder or record) and write its record."""
    torch.set_num_threads(setup.threads)
    runners = {"retrain": _retrain, "supernet": _train_supernet, "fitness": _score, "proxy": _proxy,
               "finetune": _finetune}
    if job.kind not in runners:
        raise ValueError(f"{job.key} is not a trial job")
    start = time.time()
    record, extra = runners[job.kind](setup, job)
    if not job.scores:  # minutes sit between what was trained and what was measured after it
        record = {**record, "minutes": (time.time() - start) / 60, **extra}
    return Records(setup.records).put(job, record)


def retrain_config(settings: StudySettings, space: SearchSpace, job: Job) -> TrainConfig:
    """A retraining's `TrainConfig`: the study's schedule and batch size, with the recipe the job carries or the
    study's default one."""
    from ..train.recipe import train_config

    epochs = job.epochs or settings.epochs
    recipe = job.recipe or {"lr": settings.retrain_lr, "warmup_epochs": min(1.0, epochs / 2)}
    return train_config(space, {"batch_size": settings.batch_size, **recipe, "epochs": epochs, "seed": job.seed})


def _retrain(setup: Setup, job: Job) -> tuple[dict[str, Any], dict[str, Any]]:
    from ..model import PSViT
    from ..train import fit_on

    space = setup.space
    cfg = retrain_config(setup.settings, space, job)
    cfg.checkpoint_every_steps = CHECKPOINT_EVERY
    spec = space.spec(Arch.parse(job.arch))
    torch.manual_seed(job.seed)
    model = PSViT.from_spec(spec)
    folder = setup.folder(job)
    last = fit_on(model, space, setup.gt_data, cfg, folder, arch=spec.arch, resume=(folder / "last.pt").is_file(),
                  command=f"psvit-nas study: {job.key}")
    hits = correct(model.eval(), ground_truth_batches(setup))
    return ({"arch": job.arch, "seed": job.seed, "val_top1": last["val_top1"], "val_loss": last["val_loss"]},
            {"val_correct": hits, "curve": learning_curve(folder), "bn_batches": cfg.bn_batches})


def _train_supernet(setup: Setup, job: Job) -> tuple[dict[str, Any], dict[str, Any]]:
    from ..data import Augment
    from ..supernet import Supernet
    from ..train import TrainConfig, fit_on

    s, space = setup.settings, setup.space
    paths, epochs = supernet_epochs(s, space, job)
    scored = scored_epochs(s, space, job)
    cfg = TrainConfig(epochs=epochs, batch_size=s.batch_size, lr=s.lr, sampler=job.name, val_archs=2,
                      distill_weight=s.distill_weight, checkpoint_every_steps=CHECKPOINT_EVERY,
                      save_every=scored[0] if scored else 0, augment=Augment.preset("auto", space.image_size).to_dict())
    torch.manual_seed(0)
    folder = setup.folder(job)
    fit_on(Supernet(space), space, setup.data, cfg, folder, holdout=s.holdout,
           resume=(folder / "last.pt").is_file(), command=f"psvit-nas study: {job.key}")
    extra = {"distill_weight": s.distill_weight} if job.name == "sandwich" else {}
    return {"epochs": epochs, "paths_per_step": paths}, extra


def supernet_epochs(settings: StudySettings, space: SearchSpace, job: Job) -> tuple[int, int]:
    """(paths per step, epochs) of a supernet job: equal compute in images forwarded, whatever the sampler."""
    from ..samplers import make_sampler

    paths = len(make_sampler(job.name, space, 0)(0))
    return paths, max(1, round(settings.supernet_epochs * job.scale / paths))


def scored_epochs(settings: StudySettings, space: SearchSpace, job: Job) -> list[int]:
    """The epochs before its last at which a supernet keeps a checkpoint to be scored: every --score-every
    uniform-path epochs' worth of images, so that samplers of more paths per step are scored at equal compute."""
    paths, last = supernet_epochs(settings, space, job)
    every = max(1, round(settings.score_every / paths)) if settings.score_every else 0
    return list(range(every, last, every)) if every else []


def _score(setup: Setup, job: Job) -> tuple[dict[str, Any], dict[str, Any]]:
    """Top-1 and loss of the job's architectures with inherited weights on the supernet's held-out images."""
    def scorer():
        evaluator = _evaluator(setup, job)
        return lambda arch: {k: v for k, v in evaluator.metrics(arch).items() if k in ("top1", "loss")}
    return _fill(setup, job, scorer), {}


def _finetune(setup: Setup, job: Job) -> tuple[dict[str, Any], dict[str, Any]]:
    """Summed training loss of a few steps from inherited weights, and held-out top-1 after (`FinetuneRanker`)."""
    from ..rankers import FinetuneRanker

    def scorer():
        evaluator = _evaluator(setup, job)
        return FinetuneRanker(evaluator, evaluator.calib).metrics
    return _fill(setup, job, scorer), {}


def _proxy(setup: Setup, job: Job) -> tuple[dict[str, Any], dict[str, Any]]:
    """A training-free proxy at initialisation on the first batch of the fitness images (as `evolve` scores)."""
    from ..rankers import FitnessSet, ProxyRanker

    def scorer():
        holdout = setup.settings.holdout
        batches, _ = FitnessSet(setup.data, "data", holdout, min(128, holdout), 0).load(setup.space)
        ranker = ProxyRanker(setup.space, job.name, next(iter(batches)))
        return lambda arch: {"score": ranker(arch)}
    return _fill(setup, job, scorer), {}


def _fill(setup: Setup, job: Job, scorer) -> dict[str, Any]:
    """The job's record with every architecture scored: those missing by `scorer()` (built only if needed),
    each with the seconds it took."""
    record = Records(setup.records).get(job) or {}
    missing = [a for a in job.archs if a not in record]
    if missing:
        score = scorer()
        for arch in missing:
            start = time.perf_counter()
            record[arch] = {**score(Arch.parse(arch)), "seconds": time.perf_counter() - start}
    return record


def _evaluator(setup: Setup, job: Job):
    """The job's supernet checkpoint and its fitness images, as a `search.Evaluator`."""
    from ..rankers import Evaluator, fitness_set_for
    from ..train import load_supernet

    how = VARIANTS[job.variant]
    checkpoint = setup.folder(job.supernet) / (f"epoch{job.epochs}.pt" if job.epochs else "last.pt")
    net, state = load_supernet(checkpoint)
    size = round(setup.settings.holdout * how["share"]) if "share" in how else None
    batches, calib = fitness_set_for(state, str(checkpoint), None, None, size,
                                     int(how.get("bn_batches", 10))).load(setup.space)
    return Evaluator(net, batches, calib)


def ground_truth_batches(setup: Setup) -> EvalBatches:
    """The ground truth's evaluation images."""
    val = load_images(setup.gt_data, "val", setup.space, cache=CacheConfig())
    return EvalBatches(val, setup.space.image_size, 250, workers=0, keep=True)


def correct(model: torch.nn.Module, batches: EvalBatches) -> str:
    """Which images the model classifies correctly, packed (`stats.unpack` reads them back)."""
    with torch.no_grad():
        return pack(np.concatenate([(model(x).argmax(1) == y).numpy() for x, y in batches]))


def checkpoint_hits(setup: Setup, job: Job, batches: EvalBatches) -> str | None:
    """Per-image hits of a retraining's checkpoint (for records written before they were kept); None when
    there is no checkpoint or the current model no longer loads it (a layer changed shape since)."""
    from ..train import load_weights

    checkpoint = setup.folder(job) / "last.pt"
    if not checkpoint.is_file():
        return None
    try:
        model = load_weights(str(checkpoint), setup.space.spec(Arch.parse(job.arch))).eval()
    except ConfigError as err:
        print(f"no per-image hits: {err}", flush=True)
        return None
    return correct(model, batches)


def learning_curve(folder: Path) -> list[float]:
    """Validation top-1 after each epoch of a run folder."""
    path = folder / "metrics.jsonl"
    return [json.loads(line)["val_top1"] for line in path.read_text().splitlines()] if path.is_file() else []

"""The study's jobs: one small class per kind, each with its own key, cost and runner. Five kinds run as Ray
Tune trials (retraining an architecture, training a supernet, scoring architectures with a supernet's inherited
weights, with a training-free proxy, or after fine-tuning); a search, finalize and tune run in the study's
process.

Every job trains or scores through the library (`fit_on`, `Evaluator`), in its own run folder under the study's
work folder, checkpointing every 50 steps, so a job killed mid-way continues where it stopped. A finished job
leaves its record (see `records.Records`).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

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
    """One unit of the study's work, one subclass per kind, each with its own key, cost and runner. `key` names
    its record and its run folder; fields outside the identity (`compare=False`: the payload) say what it works
    on."""

    kind: ClassVar[str] = ""
    scores: ClassVar[bool] = False  # its record maps each architecture to its scores, filled in as it goes
    trial: ClassVar[bool] = False   # runs as a Ray Tune trial (`run_job`)

    @property
    def key(self) -> str:
        return self.kind

    def cost(self, settings: StudySettings, space: SearchSpace) -> float:
        """Relative compute (MACs x epochs): trials start longest first, so that the last ones running, when
        cores fall idle, are short."""
        return 0.0

    def images(self, settings: StudySettings, train_images: int) -> float:
        """Images the job forwards, for the time estimate."""
        return 0.0

    def run(self, setup: Setup) -> tuple[dict[str, Any], dict[str, Any]]:
        """(its record, what is measured after it) of a trial job."""
        raise ValueError(f"{self.key} is not a trial job")

    def to_dict(self) -> dict[str, Any]:
        """Plain values a Ray Tune trial receives (`job_from_dict` reads them back)."""
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class RetrainJob(Job):
    """One architecture retrained from scratch with one seed: a ground-truth accuracy."""

    name: str = ""               # the architecture's name in the study
    seed: int = 0
    epochs: int | None = None    # a schedule other than the study's
    arch: str = field(default="", compare=False)
    recipe: dict[str, float] | None = field(default=None, compare=False)  # the tuned recipe (tune's record)
    kind: ClassVar[str] = "retrain"
    trial: ClassVar[bool] = True

    @property
    def key(self) -> str:
        return f"retrain-{self.name}-seed{self.seed}" + (f"-e{self.epochs}" if self.epochs else "")

    def cost(self, settings: StudySettings, space: SearchSpace) -> float:
        return space.cost_table.macs(Arch.parse(self.arch)) * (self.epochs or settings.epochs)

    def images(self, settings: StudySettings, train_images: int) -> float:
        return (self.epochs or settings.epochs) * train_images

    def run(self, setup: Setup) -> tuple[dict[str, Any], dict[str, Any]]:
        return _retrain(setup, self)


@dataclass(frozen=True)
class SupernetJob(Job):
    """A supernet trained with one sampler at `scale` times the study's supernet compute."""

    sampler: str = "uniform"
    scale: int = 1
    kind: ClassVar[str] = "supernet"
    trial: ClassVar[bool] = True

    @property
    def key(self) -> str:
        return f"supernet-{self.sampler}" + (f"-x{self.scale}" if self.scale != 1 else "")

    def cost(self, settings: StudySettings, space: SearchSpace) -> float:
        return sum(space.cost_table.macs_range) / 2 * settings.supernet_epochs * self.scale

    def images(self, settings: StudySettings, train_images: int) -> float:
        return settings.supernet_epochs * self.scale * train_images

    def run(self, setup: Setup) -> tuple[dict[str, Any], dict[str, Any]]:
        return _train_supernet(setup, self)


@dataclass(frozen=True)
class FitnessJob(Job):
    """Every architecture scored with a supernet's inherited weights (at a checkpoint, or scored a `variant` way)."""

    sampler: str = "uniform"
    epochs: int | None = None    # a supernet checkpoint before the last
    variant: str = ""            # one of VARIANTS
    archs: tuple[str, ...] = field(default=(), compare=False)
    kind: ClassVar[str] = "fitness"
    scores: ClassVar[bool] = True
    trial: ClassVar[bool] = True

    @property
    def key(self) -> str:
        return f"fitness-{self.sampler}" + (f"-{self.variant}" if self.variant else "") + \
            (f"-ep{self.epochs}" if self.epochs else "")

    @property
    def supernet(self) -> SupernetJob:
        return SupernetJob(self.sampler, int(VARIANTS[self.variant].get("scale", 1)))

    def run(self, setup: Setup) -> tuple[dict[str, Any], dict[str, Any]]:
        return _score(setup, self)


@dataclass(frozen=True)
class ProxyJob(Job):
    """Every architecture scored by a training-free proxy (`rankers.proxies`)."""

    proxy: str = ""
    archs: tuple[str, ...] = field(default=(), compare=False)
    kind: ClassVar[str] = "proxy"
    scores: ClassVar[bool] = True
    trial: ClassVar[bool] = True

    @property
    def key(self) -> str:
        return f"proxy-{self.proxy}"

    def run(self, setup: Setup) -> tuple[dict[str, Any], dict[str, Any]]:
        return _proxy(setup, self)


@dataclass(frozen=True)
class FinetuneJob(Job):
    """Every architecture scored after a few fine-tuning steps from a supernet's inherited weights."""

    sampler: str = "uniform"
    archs: tuple[str, ...] = field(default=(), compare=False)
    kind: ClassVar[str] = "finetune"
    scores: ClassVar[bool] = True
    trial: ClassVar[bool] = True

    @property
    def key(self) -> str:
        return f"finetune-{self.sampler}"

    @property
    def supernet(self) -> SupernetJob:
        return SupernetJob(self.sampler)

    def run(self, setup: Setup) -> tuple[dict[str, Any], dict[str, Any]]:
        return _finetune(setup, self)


@dataclass(frozen=True)
class SearchJob(Job):
    """A search on the first sampler's supernet at the window's budget (run in the study's process)."""

    strategy: str = "evolution"
    kind: ClassVar[str] = "search"

    @property
    def key(self) -> str:
        return f"search-{self.strategy}"


@dataclass(frozen=True)
class FinalizeJob(Job):
    """`finalize` on the evolution search: a Ray Tune experiment of its own."""

    kind: ClassVar[str] = "finalize"


@dataclass(frozen=True)
class TuneJob(Job):
    """`tune` of the finalized architecture's recipe: a Ray Tune experiment of its own."""

    kind: ClassVar[str] = "tune"


JOB_KINDS: dict[str, type[Job]] = {cls.kind: cls for cls in (RetrainJob, SupernetJob, FitnessJob, ProxyJob,
                                                             FinetuneJob, SearchJob, FinalizeJob, TuneJob)}


def job_from_dict(data: dict[str, Any]) -> Job:
    """The job `Job.to_dict` wrote (its lists, through Ray, back to tuples)."""
    fields_ = {k: tuple(v) if k == "archs" else v for k, v in data.items() if k != "kind"}
    return JOB_KINDS[data["kind"]](**fields_)


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


def run_job(setup: Setup, job: Job) -> dict[str, Any]:
    """Run a retraining, supernet or scoring job (continuing its run folder or record) and write its record."""
    torch.set_num_threads(setup.threads)
    start = time.time()
    record, extra = job.run(setup)
    if not job.scores:  # minutes sit between what was trained and what was measured after it
        record = {**record, "minutes": (time.time() - start) / 60, **extra}
    return Records(setup.records).put(job, record)


def retrain_config(settings: StudySettings, space: SearchSpace, job: RetrainJob) -> TrainConfig:
    """A retraining's `TrainConfig`: the study's schedule and batch size, with the recipe the job carries or the
    study's default one."""
    from ..train.recipe import train_config

    epochs = job.epochs or settings.epochs
    recipe = job.recipe or {"lr": settings.retrain_lr, "warmup_epochs": min(1.0, epochs / 2)}
    return train_config(space, {"batch_size": settings.batch_size, **recipe, "epochs": epochs, "seed": job.seed})


def _retrain(setup: Setup, job: RetrainJob) -> tuple[dict[str, Any], dict[str, Any]]:
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


def _train_supernet(setup: Setup, job: SupernetJob) -> tuple[dict[str, Any], dict[str, Any]]:
    from ..data import Augment
    from ..supernet import Supernet
    from ..train import TrainConfig, fit_on

    s, space = setup.settings, setup.space
    paths, epochs = supernet_epochs(s, space, job)
    scored = scored_epochs(s, space, job)
    cfg = TrainConfig(epochs=epochs, batch_size=s.batch_size, lr=s.lr, sampler=job.sampler, val_archs=2,
                      distill_weight=s.distill_weight, checkpoint_every_steps=CHECKPOINT_EVERY,
                      save_every=scored[0] if scored else 0, augment=Augment.preset("auto", space.image_size).to_dict())
    torch.manual_seed(0)
    folder = setup.folder(job)
    fit_on(Supernet(space), space, setup.data, cfg, folder, holdout=s.holdout,
           resume=(folder / "last.pt").is_file(), command=f"psvit-nas study: {job.key}")
    extra = {"distill_weight": s.distill_weight} if job.sampler == "sandwich" else {}
    return {"epochs": epochs, "paths_per_step": paths}, extra


def supernet_epochs(settings: StudySettings, space: SearchSpace, job: SupernetJob) -> tuple[int, int]:
    """(paths per step, epochs) of a supernet job: equal compute in images forwarded, whatever the sampler."""
    from ..samplers import make_sampler

    paths = len(make_sampler(job.sampler, space, 0)(0))
    return paths, max(1, round(settings.supernet_epochs * job.scale / paths))


def scored_epochs(settings: StudySettings, space: SearchSpace, job: SupernetJob) -> list[int]:
    """The epochs before its last at which a supernet keeps a checkpoint to be scored: every --score-every
    uniform-path epochs' worth of images, so that samplers of more paths per step are scored at equal compute."""
    paths, last = supernet_epochs(settings, space, job)
    every = max(1, round(settings.score_every / paths)) if settings.score_every else 0
    return list(range(every, last, every)) if every else []


def _score(setup: Setup, job: FitnessJob) -> tuple[dict[str, Any], dict[str, Any]]:
    """Top-1 and loss of the job's architectures with inherited weights on the supernet's held-out images."""
    def scorer():
        evaluator = _evaluator(setup, job.supernet, job.epochs, job.variant)
        return lambda arch: {k: v for k, v in evaluator.metrics(arch).items() if k in ("top1", "loss")}
    return _fill(setup, job, scorer), {}


def _finetune(setup: Setup, job: FinetuneJob) -> tuple[dict[str, Any], dict[str, Any]]:
    """Summed training loss of a few steps from inherited weights, and held-out top-1 after (`FinetuneRanker`)."""
    from ..rankers import FinetuneRanker

    def scorer():
        evaluator = _evaluator(setup, job.supernet)
        return FinetuneRanker(evaluator, evaluator.calib).metrics
    return _fill(setup, job, scorer), {}


def _proxy(setup: Setup, job: ProxyJob) -> tuple[dict[str, Any], dict[str, Any]]:
    """A training-free proxy at initialisation on the first batch of the fitness images (as `evolve` scores)."""
    from ..rankers import FitnessSet, ProxyRanker

    def scorer():
        holdout = setup.settings.holdout
        batches, _ = FitnessSet(setup.data, "data", holdout, min(128, holdout), 0).load(setup.space)
        ranker = ProxyRanker(setup.space, job.proxy, next(iter(batches)))
        return lambda arch: {"score": ranker(arch)}
    return _fill(setup, job, scorer), {}


def _fill(setup: Setup, job: FitnessJob | ProxyJob | FinetuneJob, scorer) -> dict[str, Any]:
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


def _evaluator(setup: Setup, supernet: SupernetJob, epochs: int | None = None, variant: str = ""):
    """A supernet's checkpoint (its last, or the one after `epochs`) and its fitness images (as `variant` takes
    them), as a `rankers.Evaluator`."""
    from ..rankers import Evaluator, fitness_set_for
    from ..train import load_supernet

    how = VARIANTS[variant]
    checkpoint = setup.folder(supernet) / (f"epoch{epochs}.pt" if epochs else "last.pt")
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


def checkpoint_hits(setup: Setup, job: RetrainJob, batches: EvalBatches) -> str | None:
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

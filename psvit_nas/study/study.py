"""The ranking study: does a ranker order architectures the way training does?

Architectures spread over the space's MACs range and inside a window around one budget (plus named extras)
are retrained from scratch with several seeds (the ground truth, and how well it reproduces itself); one
supernet per sampler at equal compute scores each of them with inherited weights; evolution and random search
run at the window's budget and their winners are retrained; `finalize` and `tune` follow the search. Independent
jobs run as parallel Ray Tune trials, stage after stage; every finished job is a record, so the study resumes.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..baselines import layer_family
from ..cluster import ray_session
from ..data import holdout_split, load_split
from ..errors import ConfigError
from ..rankers import PROXIES
from ..space import Arch, ArchSpec, SearchSpace, parse_budget
from .archs import StudyArch, check_budget, parse_extra, pick_archs, probe_archs
from .data import check_data, class_subset, gt_subset
from .jobs import (VARIANTS, FinalizeJob, FinetuneJob, FitnessJob, Job, ProxyJob, RetrainJob, SearchJob, Setup,
                   SupernetJob, TuneJob, checkpoint_hits, ground_truth_batches, learning_curve, retrain_config,
                   scored_epochs)
from .records import Records
from .runner import run_trials
from .settings import STAGES, StudySettings

def _no_ray() -> None:
    """Outside `run`, trials start Ray themselves."""


AFTER_SEARCH = ("finalized", "tuned")  # the search's top-1 is winner-evolution


class Study:
    """A study's architectures, jobs and records; `run` does what is missing, `analyse` reads the records."""

    def __init__(self, settings: StudySettings, threads: int = 1, ray_address: str | None = None) -> None:
        s = self.settings = settings
        check_data(s.data)
        self.space = SearchSpace.from_yaml(s.config)
        self.budget = parse_budget(s.budget, field_name="--budget") if s.budget else self.space.median_macs()
        check_budget(self.space, self.budget)
        extras = [parse_extra(text, self.space, self.budget, s.window > 0) for text in s.extra]
        self.records = Records(Path(s.out).resolve() / "records")
        self._check_records()
        family = [StudyArch(name, "family", arch) for name, arch in layer_family(self.space, s.family).items()]
        self.archs = pick_archs(self.space, s.spread, s.window, self.budget, s.seed) + extras + family
        spread = [a for a in self.archs if a.group == "spread"]
        self.probe = probe_archs(spread, s.probe_archs) if s.probe_epochs != s.epochs else []
        self.ray_address = ray_address
        self.need_ray = _no_ray  # inside `run`: starts Ray the first time a stage has jobs
        work = Path(s.work).resolve()
        data = class_subset(str(Path(s.data).resolve()) if Path(s.data).exists() else s.data, s.classes,
                            work / f"data-{s.classes}classes")
        gt_data = gt_subset(data, s.gt_holdout, self._fitness_images(data),
                            work / f"data-{s.classes}classes-gt{s.gt_holdout}") if s.gt_holdout else data
        self.setup = Setup(s, str(Path(s.config).resolve()), data, gt_data, str(work), str(self.records.folder),
                           threads)
        work.mkdir(parents=True, exist_ok=True)
        self.records.folder.mkdir(parents=True, exist_ok=True)

    def _check_records(self) -> None:
        """Records of another space (or another study's architectures) are bad input, not data to mix in."""
        folder = self.records.folder
        for path in sorted(folder.glob("retrain-*.json")) if folder.is_dir() else []:
            arch = json.loads(path.read_text()).get("arch", "")
            self.space.validate(Arch.parse(arch), source=f"{path} (records of another search space?)")

    def _fitness_images(self, data: str) -> set[str]:
        """File names of the supernets' fitness images, which the ground truth never evaluates on."""
        train = load_split(data, "train", self.space)
        if not hasattr(train, "samples"):
            return set()
        return {Path(train.samples[i][0]).name for i in holdout_split(len(train), self.settings.holdout)[1]}

    # ----- jobs ---------------------------------------------------------------------
    def retrain(self, name: str, seed: int, arch: Arch | str, epochs: int | None = None,
                recipe: dict[str, float] | None = None) -> RetrainJob:
        return RetrainJob(name, seed, epochs if epochs != self.settings.epochs else None, arch=str(arch),
                          recipe=recipe)

    def seeds_of(self, a: StudyArch) -> tuple[int, ...]:
        """The seeds an architecture is retrained with: --named-seeds for a named extra, else --seeds."""
        return (self.settings.named_seeds or self.settings.seeds) if a.named else self.settings.seeds

    def ground_truth_jobs(self) -> list[Job]:
        """Every architecture with each of its seeds, the seeds of one architecture together."""
        return [self.retrain(a.name, seed, a.arch) for a in self.archs for seed in self.seeds_of(a)]

    def probe_jobs(self) -> list[Job]:
        s = self.settings
        return [self.retrain(a.name, s.seeds[0], a.arch, s.probe_epochs) for a in self.probe]

    def fitness_jobs(self, variants: bool) -> list[Job]:
        s = self.settings
        archs = tuple(str(a.arch) for a in self.archs)
        jobs = [FitnessJob(sampler, archs=archs) for sampler in s.samplers]
        jobs += [FitnessJob(sampler, epochs=epoch, archs=archs) for sampler in s.samplers
                 for epoch in self.scored_epochs(sampler)]
        return jobs + [FitnessJob(s.samplers[0], variant=v, archs=archs) for v in VARIANTS if v and variants]

    def ranker_jobs(self) -> list[Job]:
        """Rankers beyond the supernets' top-1 (`rankers`): every training-free proxy, and fine-tuning
        from the first sampler's supernet."""
        archs = tuple(str(a.arch) for a in self.archs)
        return [ProxyJob(p, archs=archs) for p in PROXIES] + [FinetuneJob(self.settings.samplers[0], archs=archs)]

    def scored_epochs(self, sampler: str) -> list[int]:
        """The supernet checkpoints (epochs) before its last that every architecture is scored at."""
        return scored_epochs(self.settings, self.space, SupernetJob(sampler))

    def all_jobs(self) -> list[Job]:
        """Every job of the full study (trials, searches, finalize, tune), for its progress count."""
        s, first = self.settings, self.settings.samplers[0]
        searches = [SearchJob(k) for k in ("evolution", "random")]
        winners = [RetrainJob(f"winner-{k}", seed) for k in ("evolution", "random") for seed in s.seeds]
        after = [job for seed in s.seeds for job in self.after_retrains(seed)]
        return ([SupernetJob(sampler) for sampler in s.samplers] + [SupernetJob(first, scale=2)]
                + self.ground_truth_jobs() + searches + winners + [FinalizeJob(), TuneJob()] + after
                + self.probe_jobs())

    def planned(self) -> list[Job]:
        """The jobs of `all_jobs` that the chosen stages run."""
        stages = set(self.settings.stages)
        return [j for j in self.all_jobs() if stages & set(_stages_of(j))]

    def pending(self, job: Job) -> bool:
        """Whether a job still has work: no record, or (a scoring job) an architecture not yet scored."""
        record = self.records.get(job)
        return record is None or (job.scores and any(a not in record for a in job.archs))

    def supernets_needed(self, fitness: list[Job], searches: list[Job]) -> list[Job]:
        """Supernets without a record, and those whose checkpoint is gone while a job still needs it."""
        first = SupernetJob(self.settings.samplers[0])
        fitness = [j for j in fitness if not isinstance(j, ProxyJob)]  # proxies score untrained networks
        users = [j.supernet for j in fitness if self.pending(j)] + [first for j in searches if self.pending(j)]
        wanted = [j.supernet for j in fitness] + ([first] if searches else [])
        return [sn for sn in dict.fromkeys(wanted) if self.pending(sn) or
                (sn in users and not (self.setup.folder(sn) / "last.pt").is_file())]

    # ----- running ------------------------------------------------------------------
    def run(self) -> None:
        """Run every missing job of the chosen stages, stage after stage, independent jobs as parallel trials."""
        s, stages = self.settings, set(self.settings.stages)
        fitness = self.fitness_jobs("variants" in stages) if stages & {"fitness", "variants"} else []
        fitness += self.ranker_jobs() if "rankers" in stages else []
        searches = [SearchJob(k) for k in ("evolution", "random")] if "search" in stages else []
        supernets = self.supernets_needed(fitness, searches)
        training = supernets + (self.ground_truth_jobs() if "retrain" in stages else []) + \
            (self.probe_jobs() if "probe" in stages else [])
        with ray_session(self.ray_address, lazy=True) as self.need_ray:  # one Ray for every stage, if any
            try:
                self.trials(training, again=supernets)
                self.trials(fitness)
                retrains = [self.retrain(f"winner-{j.strategy}", seed, self.search(j)) for j in searches
                            for seed in s.seeds]
                self.trials(retrains + (self.after_search() if "after-search" in stages else []))
            finally:
                self.need_ray = _no_ray
        self.fill_in()

    def trials(self, jobs: list[Job], again: list[Job] = ()) -> None:
        """Run the pending `jobs`, and those in `again` (a supernet whose checkpoint is gone) whatever their
        records say, as parallel trials."""
        todo = [j for j in jobs if self.pending(j) or j in again]
        if not todo:
            return
        self.need_ray()
        start, done = time.time(), []

        def on_done(job: Job) -> None:
            done.append(job)
            print(f"[{(time.time() - start) / 60:.0f} min] {job.key} done ({len(done)} of {len(todo)})", flush=True)

        run_trials(todo, self.setup, self.ray_address, on_done)

    def search(self, job: SearchJob) -> str:
        """Evolution or random search on the first sampler's supernet at the window's budget; the winner."""
        from ..rankers import fitness_set_for
        from ..search import SearchConfig, evolve
        from ..train import read_supernet

        if (record := self.records.get(job)) is None:
            s = self.settings
            checkpoint = str(self.setup.folder(SupernetJob(s.samplers[0])) / "last.pt")
            folder = self.setup.folder(job)
            cfg = SearchConfig(strategy=job.strategy, population=s.population, generations=s.generations,
                               topk=max(2, s.population // 5), max_macs=self.budget)
            supernet = read_supernet(checkpoint)
            fitness = fitness_set_for(supernet.state, checkpoint, None, None, None, 10)
            evolve(supernet, cfg, fitness, folder, resume=(folder / "search_state.json").is_file())
            best = ArchSpec.from_yaml(folder / "best.yaml")
            record = self.records.put(job, {"arch": str(best.arch), "fitness": best.metrics["fitness"],
                                            "macs": best.metrics["macs"]})
        return record["arch"]

    def after_search(self) -> list[Job]:
        """`finalize` and `tune` on the evolution search (each a Ray Tune experiment of its own); the retrainings
        that compare finalize's pick and the tuned recipe with the search's top-1 (`winner-evolution`)."""
        self._after_search_step(FinalizeJob())
        self._after_search_step(TuneJob())
        return [job for seed in self.settings.seeds for job in self.after_retrains(seed)]

    def after_retrains(self, seed: int) -> list[Job]:
        """Finalize's pick retrained with the default recipe and with the tuned one (from tune's record, so a lost
        work folder loses nothing); the default only once tune's record shows that it kept the default, for the
        tuned retraining would repeat it to the bit."""
        final, tune = self.records.get(FinalizeJob()), self.records.get(TuneJob())
        default = self.retrain("finalized", seed, final["arch"] if final else "")
        if self.tune_kept_default():
            return [default]
        return [default, self.retrain("tuned", seed, tune["arch"] if tune else "", recipe=tune and tune["recipe"])]

    def tune_kept_default(self) -> bool:
        """Whether tune's record holds a recipe that trains exactly as the study's default one."""
        tune = self.records.get(TuneJob())
        if tune is None:
            return False
        default, tuned = RetrainJob(seed=0), RetrainJob(seed=0, recipe=tune["recipe"])
        return retrain_config(self.settings, self.space, default) == retrain_config(self.settings, self.space, tuned)

    def _after_search_step(self, job: FinalizeJob | TuneJob) -> dict[str, Any]:
        import yaml

        from ..data import CacheConfig
        from ..tune import finalize, tune_recipe

        if (record := self.records.get(job)) is not None:
            return record
        self.need_ray()
        s, work = self.settings, Path(self.setup.work)
        folder = work / job.key
        setup = {"epochs": s.epochs, "seed": 0, "threads": self.setup.threads, "grace_epochs": 0,
                 "cache": CacheConfig()}
        resume, start = (folder / "tune").is_dir(), time.time()
        if isinstance(job, FinalizeJob):
            spec = finalize(work / "search-evolution", s.finalize_topk, setup, folder, resume=resume,
                            ray_address=self.ray_address)
            record = {"arch": str(spec.arch), **{k: spec.metrics["finalize"][k] for k in ("search_rank", "trials")}}
        else:
            final = work / "finalize" / "final.yaml"
            spec = ArchSpec.from_yaml(final)
            tune_recipe(spec, spec.metrics["fitness_set"], s.tune_samples, setup, folder, resume, self.ray_address,
                        str(final))
            record = yaml.safe_load((folder / "recipe.yaml").read_text())
        return self.records.put(job, {**record, "minutes": (time.time() - start) / 60})

    def fill_in(self) -> None:
        """Per-image hits and learning curves for retraining records written before they were kept."""
        batches = None
        for job in self.ground_truth_jobs() + self.probe_jobs():
            record = self.records.get(job)
            if record is None:
                continue
            added = {}
            if "val_correct" not in record:
                batches = batches or ground_truth_batches(self.setup)
                if (hits := checkpoint_hits(self.setup, job, batches)) is not None:
                    added["val_correct"] = hits
            if "curve" not in record and (curve := learning_curve(self.setup.folder(job))):
                added["curve"] = curve
            if added:
                self.records.put(job, {**record, **added})

    def train_images(self) -> int:
        return len(load_split(self.setup.data, "train", self.space)) - self.settings.holdout

    def estimate_minutes(self, trials_at_once: int) -> float:
        """Rough wall minutes of the chosen stages' pending trainings at --est-images-per-s per trial: their work
        shared among the trials at once, but never less than the longest job, which runs as one trial."""
        images = self.train_images()
        work = [j.images(self.settings, images) for j in self.planned() if j not in self.records]
        wall = max(sum(work) / max(1, trials_at_once), max(work, default=0.0))
        return wall / self.settings.est_images_per_s / 60


def _stages_of(job: Job) -> tuple[str, ...]:
    """The stages that run a job of `Study.all_jobs`."""
    if isinstance(job, SupernetJob):
        return ("variants",) if job.scale != 1 else ("fitness", "search", "rankers")
    if isinstance(job, SearchJob) or (isinstance(job, RetrainJob) and job.name.startswith("winner-")):
        return ("search",)
    if isinstance(job, (FinalizeJob, TuneJob)) or (isinstance(job, RetrainJob) and job.name in AFTER_SEARCH):
        return ("after-search",)
    return ("probe",) if job.epochs else ("retrain",)


def trials_at_once(threads: int) -> int:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, (os.cpu_count() or 1) // threads)


def check_stages(stages: tuple[str, ...]) -> None:
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(None, "--stages", f"unknown {unknown}; expected some of {list(STAGES)}")


__all__ = ["Study", "StudyArch", "STAGES", "check_stages", "trials_at_once"]

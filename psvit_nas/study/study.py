"""The ranking study: does a ranker order architectures the way training does?

Architectures spread over the space's MACs range and inside a window around one budget (plus named extras)
are retrained from scratch with several seeds (the ground truth, and how well it reproduces itself); one
supernet per sampler at equal compute scores each of them with inherited weights; evolution and random search
run at the window's budget and their winners are retrained; `finalize` and `tune` follow the search. Independent
jobs run as parallel Ray Tune trials, stage after stage; every finished job is a record, so the study resumes.
Which jobs each stage holds is the plan's (`plan.Plan.table`); this module runs them.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ..cluster import ray_session
from ..data import holdout_split, load_split
from ..errors import ConfigError
from ..space import ArchSpec
from .archs import StudyArch
from .data import check_data, class_subset, gt_subset
from .jobs import (FinalizeJob, Job, ProxyJob, SearchJob, Setup, SupernetJob, TuneJob, checkpoint_hits,
                   ground_truth_batches, learning_curve)
from .plan import SEARCHES, Plan
from .runner import run_trials
from .settings import STAGES, StudySettings


def _no_ray() -> None:
    """Outside `run`, trials start Ray themselves."""


class Study(Plan):
    """A study's plan run: `run` does what its records lack, stage after stage, as parallel Ray Tune trials."""

    def __init__(self, settings: StudySettings, threads: int = 1, ray_address: str | None = None) -> None:
        check_data(settings.data)
        super().__init__(settings)
        s = settings
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

    def _fitness_images(self, data: str) -> set[str]:
        """File names of the supernets' fitness images, which the ground truth never evaluates on."""
        train = load_split(data, "train", self.space)
        if not hasattr(train, "samples"):
            return set()
        return {Path(train.samples[i][0]).name for i in holdout_split(len(train), self.settings.holdout)[1]}

    def supernets_needed(self, fitness: list[Job], searches: list[Job]) -> list[Job]:
        """Supernets without a record, and those whose checkpoint is gone while a job still needs it."""
        first = SupernetJob(self.settings.samplers[0])
        fitness = [j for j in fitness if not isinstance(j, ProxyJob)]  # proxies score untrained networks
        users = [j.supernet for j in fitness if self.pending(j)] + [first for j in searches if self.pending(j)]
        wanted = [j.supernet for j in fitness] + ([first] if searches else [])
        return [sn for sn in dict.fromkeys(wanted) if self.pending(sn) or
                (sn in users and not (self.setup.folder(sn) / "last.pt").is_file())]

    def supernets_again(self) -> list[Job]:
        """Supernets with a record that train again: a chosen job still needs their checkpoint, and it is gone."""
        chosen = self.jobs(self.settings.stages)
        needed = self.supernets_needed([j for j in chosen if j.scores], [j for j in chosen if isinstance(j, SearchJob)])
        return [sn for sn in needed if not self.pending(sn)]

    # ----- running ------------------------------------------------------------------
    def run(self) -> None:
        """Run every missing job of the chosen stages (`Plan.table`), in three waves of parallel trials: the
        trainings (supernets, retrainings, probes), then the scoring jobs, then the searches' winners and what
        follows the search."""
        s, chosen = self.settings, self.jobs(self.settings.stages)
        fitness = [j for j in chosen if j.scores]
        searches = [j for j in chosen if isinstance(j, SearchJob)]
        supernets = self.supernets_needed(fitness, searches)
        training = supernets + self.jobs(tuple(set(s.stages) & {"retrain", "probe"}))
        with ray_session(self.ray_address, lazy=True) as self.need_ray:  # one Ray for every stage, if any
            try:
                self.trials(training, again=supernets)
                self.trials(fitness)
                retrains = [self.retrain(f"winner-{j.strategy}", seed, self.search(j)) for j in searches
                            for seed in s.seeds]
                self.trials(retrains + (self.after_search() if "after-search" in s.stages else []))
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

    def _after_search_step(self, job: FinalizeJob | TuneJob) -> dict[str, Any]:
        import yaml

        from ..data import CacheConfig
        from ..tune import finalize, tune_recipe

        if (record := self.records.get(job)) is not None:
            return record
        self.need_ray()
        s, folder = self.settings, self.setup.folder(job)
        setup = {"epochs": s.epochs, "seed": 0, "threads": self.setup.threads, "grace_epochs": 0,
                 "cache": CacheConfig()}
        resume, start = (folder / "tune").is_dir(), time.time()
        if isinstance(job, FinalizeJob):
            spec = finalize(self.setup.folder(SearchJob(SEARCHES[0])), s.finalize_topk, setup, folder, resume=resume,
                            ray_address=self.ray_address)
            record = {"arch": str(spec.arch), **{k: spec.metrics["finalize"][k] for k in ("search_rank", "trials")}}
        else:
            final = self.setup.folder(FinalizeJob()) / "final.yaml"
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
        """Rough wall minutes of the chosen stages' pending trainings (and `supernets_again`) at
        --est-images-per-s per trial: their work shared among the trials at once, but never less than the longest
        job, which runs as one trial. A retraining a kill left half-done counts only its epochs left."""
        images = self.train_images()
        todo = [j for j in self.planned() if j not in self.records] + self.supernets_again()
        work = [j.images(self.settings, images) * (1 - self._share_done(j)) for j in todo]
        wall = max(sum(work) / max(1, trials_at_once), max(work, default=0.0))
        return wall / self.settings.est_images_per_s / 60

    def _share_done(self, job: Job) -> float:
        """The share of a retraining's epochs already in its run folder (0 for other jobs)."""
        metrics = self.setup.folder(job) / "metrics.jsonl"
        if job.kind != "retrain" or job in self.records or not metrics.is_file():
            return 0.0
        return min(1.0, len(metrics.read_text().splitlines()) / (job.epochs or self.settings.epochs))


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

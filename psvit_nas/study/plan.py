"""The study's plan: which architectures it retrains and which jobs it runs, stage by stage (`Plan.table`),
read against its records. No Ray and no training here: `study.Study` runs the plan, `results.analyse` reads it.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..baselines import layer_family
from ..rankers import PROXIES
from ..space import Arch, SearchSpace, parse_budget
from .archs import StudyArch, check_window, parse_extra, pick_archs, probe_archs
from .jobs import (VARIANTS, FinalizeJob, FinetuneJob, FitnessJob, Job, ProxyJob, RetrainJob, SearchJob,
                   SupernetJob, TuneJob, retrain_config, scored_epochs)
from .records import Records
from .settings import STAGES, StudySettings

SEARCHES = ("evolution", "random")  # the strategies the study searches with; the first feeds finalize


class Plan:
    """A study's architectures and jobs, and the records that say which are done."""

    def __init__(self, settings: StudySettings) -> None:
        s = self.settings = settings
        self.space = SearchSpace.from_yaml(s.config)
        self.budget = parse_budget(s.budget, field_name="--budget") if s.budget else self.space.median_macs()
        check_window(self.space, self.budget)
        extras = [parse_extra(text, self.space, self.budget, s.window > 0) for text in s.extra]
        self.records = Records(Path(s.out).resolve() / "records")
        self._check_records()
        family = [StudyArch(name, "family", arch) for name, arch in layer_family(self.space, s.family).items()]
        self.archs = pick_archs(self.space, s.spread, s.window, self.budget, s.seed) + extras + family
        spread = [a for a in self.archs if a.group == "spread"]
        self.probe = probe_archs(spread, s.probe_archs) if s.probe_epochs != s.epochs else []

    def _check_records(self) -> None:
        """Records of another space (or another study's architectures) are bad input, not data to mix in."""
        folder = self.records.folder
        for path in sorted(folder.glob("retrain-*.json")) if folder.is_dir() else []:
            arch = json.loads(path.read_text()).get("arch", "")
            self.space.validate(Arch.parse(arch), source=f"{path} (records of another search space?)")

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

    def table(self) -> dict[str, list[Job]]:
        """Every job of the full study by the stage that runs it, in the order the stages run: the one table the
        runner, the progress count and the time estimate all read. A job several stages need (the first
        sampler's supernet) is listed under each. A search's winners and the after-search retrainings carry their
        architecture only once the search, finalize and tune have records."""
        s, first = self.settings, self.settings.samplers[0]
        supernets = [SupernetJob(sampler) for sampler in s.samplers]
        searches = [SearchJob(k) for k in SEARCHES]
        winners = [RetrainJob(f"winner-{k}", seed) for k in SEARCHES for seed in s.seeds]
        after = [job for seed in s.seeds for job in self.after_retrains(seed)]
        return {"fitness": supernets + self.fitness_jobs(variants=False),
                "retrain": self.ground_truth_jobs(),
                "search": [SupernetJob(first)] + searches + winners,
                "after-search": [FinalizeJob(), TuneJob()] + after,
                "variants": [SupernetJob(first, scale=2)] + self.fitness_jobs(variants=True),
                "probe": self.probe_jobs(),
                "rankers": [SupernetJob(first)] + self.ranker_jobs()}

    def jobs(self, stages: tuple[str, ...] = STAGES) -> list[Job]:
        """The jobs of the given stages, each once, in the table's order."""
        table = self.table()
        return list(dict.fromkeys(job for stage in STAGES if stage in stages for job in table[stage]))

    def all_jobs(self) -> list[Job]:
        """Every job of the full study that trains or searches (scoring jobs fill in beside them), for its
        progress count."""
        return [job for job in self.jobs() if not job.scores]

    def planned(self) -> list[Job]:
        """The jobs of `all_jobs` that the chosen stages run."""
        return [job for job in self.jobs(self.settings.stages) if not job.scores]

    def pending(self, job: Job) -> bool:
        """Whether a job still has work: no record, or (a scoring job) an architecture not yet scored."""
        record = self.records.get(job)
        return record is None or (job.scores and any(a not in record for a in job.archs))

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


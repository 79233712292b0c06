"""Independent jobs as Ray Tune trials: as many at once as the resources allow (`cpus_per_trial` CPU threads
each, one GPU each where Ray sees GPUs), on this machine or a Ray cluster (`ray_address`).

A trial runs one job through the library and writes its record itself, so a study killed mid-way keeps every
finished record; a trial in flight continues from its run folder's last checkpoint when the study is rerun.
On a cluster, the study's `--out` and `--work` must be on storage every node sees.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from ..cluster import ray_session
from ..tune.trials import TrialsFailed
from .jobs import Job, Setup, job_from_dict, run_job


def default_cpus_per_trial() -> int:
    """One CPU thread per trial: small vision transformers scale poorly across threads, so on a CPU machine
    several one-thread trials side by side train more images per second than one trial on every core
    (docs/benchmarks.md: 1.3x on 2 cores). With GPUs, the CPUs are split between one trial per GPU."""
    import torch

    cpus = os.cpu_count() or 1
    return max(1, cpus // torch.cuda.device_count()) if torch.cuda.is_available() else 1


def _trial(config: dict[str, Any], setup: Setup) -> None:
    from ray import tune

    run_job(setup, job_from_dict(config["job"]))
    tune.report({"done": 1})


def run_order(jobs: list[Job], setup: Setup) -> list[Job]:
    """Jobs a kill left half-trained first (their hours are spent; the next stop loses less), then the longest
    first, so that the tail, when cores fall idle, is short."""
    return sorted(jobs, key=lambda j: (not (setup.folder(j) / "last.pt").is_file(),
                                       -j.cost(setup.settings, setup.space)))


def run_trials(jobs: list[Job], setup: Setup, ray_address: str | None = None,
               on_done: Callable[[Job], None] | None = None) -> None:
    """Run `jobs` (independent of each other) as Ray Tune trials in `run_order`; `on_done(job)` after each
    finished one."""
    if not jobs:
        return
    import torch
    from ray import tune

    jobs = run_order(jobs, setup)
    by_key = {job.key: job for job in jobs}

    class Progress(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if on_done is not None:
                on_done(by_key[job_from_dict(trial.config["job"]).key])

    gpu = 1 if torch.cuda.is_available() else 0
    trainable = tune.with_resources(tune.with_parameters(_trial, setup=setup), {"cpu": setup.threads, "gpu": gpu})
    with ray_session(ray_address):
        grid = tune.Tuner(trainable, param_space={"job": tune.grid_search([j.to_dict() for j in jobs])},
                          tune_config=tune.TuneConfig(reuse_actors=True),  # no torch import per job
                          run_config=tune.RunConfig(name=f"jobs-{time.strftime('%Y%m%d-%H%M%S')}",
                                                    storage_path=str(Path(setup.work) / "ray"), verbose=0,
                                                    callbacks=[Progress()])).fit()
    failed = [r for r in grid if r.error]
    if failed:
        last = str(failed[0].error).strip().splitlines()[-1]
        raise TrialsFailed(f"{len(failed)} of {len(grid)} jobs failed; the first, {failed[0].config['job']}: {last}; "
                           "fix the cause and rerun the same command: finished jobs are kept")

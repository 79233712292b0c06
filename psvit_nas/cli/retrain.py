"""`finalize`, `tune`: Ray Tune trials after the search (the real winner of the top-k, its retraining recipe)."""
from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..io import run_folder
from ..space import ArchSpec, parse_budget
from .common import add_cache_args, add_run_folder_args, cache_config, check_numbers, command


def _setup(args: argparse.Namespace) -> dict:
    if args.epochs < 1:
        raise ConfigError(None, "--epochs", f"expected a positive number of epochs, got {args.epochs}")
    if args.cpus_per_trial < 1:
        raise ConfigError(None, "--cpus-per-trial", f"expected a positive number, got {args.cpus_per_trial}")
    if not 0 <= args.grace_epochs <= args.epochs:
        raise ConfigError(None, "--grace-epochs", f"expected 0..{args.epochs} (--epochs), got {args.grace_epochs}")
    cache = cache_config(args)
    return {"epochs": args.epochs, "seed": args.seed, "threads": args.cpus_per_trial,
            "grace_epochs": args.grace_epochs, "cache": type(cache)(cache.mode, str(cache.root), cache.limit, 0)}


@command("finalize")
def cmd_finalize(args: argparse.Namespace) -> None:
    from ..train.recipe import load_recipe
    from ..tune import finalize
    from ..tune.finalize import check_rungs

    check_numbers(args, positive=("topk",))
    recipe = load_recipe(args.recipe) if args.recipe else None
    setup = _setup(args)
    rungs = tuple(args.rungs or ())
    check_rungs(rungs, args.epochs)
    max_macs = parse_budget(args.flops, field_name="--flops") if args.flops else None
    with run_folder(args.out, args.resume, args.force):
        finalize(args.search, args.topk, setup, args.out, recipe, args.resume, args.ray_address, rungs, max_macs)


@command("tune")
def cmd_tune(args: argparse.Namespace) -> None:
    from ..data import load_images
    from ..tune import tune_recipe

    spec = ArchSpec.from_yaml(args.arch)
    if args.samples < 1:
        raise ConfigError(None, "--samples", f"expected a positive number of recipes, got {args.samples}")
    fitness = spec.metrics.get("fitness_set")
    if fitness is None:  # a hand-written spec: hold out part of --data's training images
        if not args.data:
            raise ConfigError(args.arch, "fitness_set", "this spec records no held-out training images (a "
                              "best.yaml or final.yaml does); give --data to hold some out")
        n = len(load_images(args.data, "train", spec.space, args.data_dir, cache_config(args)))
        holdout = min(n // 10, 10_000)
        fitness = {"data": args.data, "data_dir": args.data_dir, "holdout": holdout, "size": holdout}
    setup = _setup(args)
    with run_folder(args.out, args.resume, args.force):
        tune_recipe(spec, fitness, args.samples, setup, args.out, args.resume, args.ray_address, args.arch)


def _add_trial_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=10, help="epochs per trial (ASHA may stop a trial earlier)")
    p.add_argument("--grace-epochs", type=int, default=0, help="epochs every trial gets before ASHA may stop it "
                   "(default 0: half of --epochs; ASHA keeps the better half at each rung)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--cpus-per-trial", type=int, default=1, help="CPU threads per trial (a GPU each, if any)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ray-address", default=None, help="Ray cluster address, e.g. auto (default: start locally)")
    add_run_folder_args(p, "continue the experiment in OUT (Tune's restore)")
    add_cache_args(p)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """This group's subcommands and their arguments."""
    p = sub.add_parser("finalize", help="retrain the search's top-k briefly (Ray Tune, ASHA) and keep the best")
    p.add_argument("--search", required=True, help="an evolve run folder")
    p.add_argument("--topk", type=int, default=5, help="distinct architectures retrained")
    p.add_argument("--flops", help="MACs budget, e.g. 8M: the top-k of the search's architectures within it "
                   "(one evolve --strategy nsga2 then feeds a finalize per budget)")
    p.add_argument("--recipe", help="recipe.yaml from psvit-nas tune (default: the train defaults)")
    p.add_argument("--rungs", type=int, nargs="+", metavar="E", help="complete-schedule successive halving "
                   "instead of ASHA: retrain every architecture from scratch for E epochs (a schedule that "
                   "anneals to its end), keep the better half, and so on up to --epochs, e.g. --rungs 8 15")
    _add_trial_args(p)
    p = sub.add_parser("tune", help="search an architecture's retraining recipe (Ray Tune, ASHA)")
    p.add_argument("--arch", required=True, help="architecture spec (best.yaml or final.yaml)")
    p.add_argument("--samples", type=int, default=8, help="recipes tried, the default recipe first")
    p.add_argument("--data", default=None, help="dataset, for a spec that records no held-out images")
    p.add_argument("--data-dir", default="data")
    _add_trial_args(p)

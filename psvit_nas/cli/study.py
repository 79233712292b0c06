"""`study`: does a supernet rank architectures the way training does? Retrainings as parallel Ray Tune trials."""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from ..errors import ConfigError
from ..samplers import SAMPLERS
from .common import command

COUNTS = ("classes", "spread", "window", "epochs", "supernet_epochs", "score_every", "holdout", "gt_holdout",
          "population", "generations", "batch_size", "finalize_topk", "tune_samples", "probe_archs", "probe_epochs")
MAY_BE_ZERO = ("classes", "gt_holdout", "probe_archs", "spread", "window", "score_every")
PLAIN = ("config", "data", "out", "budget", "distill_weight", "lr", "retrain_lr", "seed", "est_images_per_s",
         "goals")


def _settings(args: argparse.Namespace):
    from ..study import StudySettings, check_stages

    for name in COUNTS:
        low = 0 if name in MAY_BE_ZERO else 1
        if getattr(args, name) < low:
            raise ConfigError(None, f"--{name.replace('_', '-')}", f"expected an integer >= {low}, got "
                              f"{getattr(args, name)}")
    unknown = [s for s in args.samplers if s not in SAMPLERS]
    if unknown:
        raise ConfigError(None, "--samplers", f"unknown {unknown}; expected some of {list(SAMPLERS)}")
    if not args.seeds or len(set(args.seeds)) != len(args.seeds):
        raise ConfigError(None, "--seeds", f"expected distinct seeds, got {args.seeds}")
    if args.named_seeds and (len(set(args.named_seeds)) != len(args.named_seeds) or
                             not set(args.seeds) <= set(args.named_seeds)):
        raise ConfigError(None, "--named-seeds", f"expected distinct seeds that include every --seeds seed "
                          f"{args.seeds}, got {args.named_seeds}")
    if args.cpus_per_trial is not None and args.cpus_per_trial < 1:
        raise ConfigError(None, "--cpus-per-trial", f"expected a positive number, got {args.cpus_per_trial}")
    check_stages(tuple(args.stages))
    out = Path(args.out)
    return StudySettings(**{k: getattr(args, k) for k in COUNTS + PLAIN}, work=args.work or str(out / "work"),
                         results=args.results or str(out / "results.md"), extra=tuple(args.extra),
                         family=tuple(args.family),
                         seeds=tuple(args.seeds), named_seeds=tuple(args.named_seeds or ()),
                         samplers=tuple(args.samplers), stages=tuple(args.stages))


def rerun_args(argv: list[str]) -> list[str]:
    """The arguments that continue the whole study: without --report-only and without a --stages choice."""
    out, skipping = [], False
    for arg in argv:
        skipping = arg == "--stages" or (skipping and not arg.startswith("--"))
        if not skipping and arg != "--report-only":
            out.append(arg)
    return out


@command("study")
def cmd_study(args: argparse.Namespace) -> None:
    from ..io import atomic_write_text, run_folder
    from ..study import Study, analyse, trials_at_once, write_results
    from ..study.runner import default_cpus_per_trial

    settings = _settings(args)
    threads = args.cpus_per_trial or default_cpus_per_trial()
    study = Study(settings, threads, args.ray_address)
    jobs, planned = study.all_jobs(), study.planned()
    again = study.supernets_again()
    for supernet in again:
        print(f"{supernet.key}: its checkpoint in {study.setup.folder(supernet)} is gone and a scoring job still "
              "needs it, so it trains again", flush=True)
    todo = sum(j not in study.records for j in planned) + len(again)
    stages = "" if len(planned) == len(jobs) else f" in stages {', '.join(settings.stages)}"
    at_once = trials_at_once(threads)
    print(f"{len(jobs)} jobs, {todo} to run{stages}: about {study.estimate_minutes(at_once):.0f} minutes at "
          f"{settings.est_images_per_s:.0f} img/s per trial, {at_once} trials at once ({threads} CPU threads each)",
          flush=True)
    with run_folder(settings.out, resume=True):  # a study always continues its records; one writer at a time
        if not args.report_only:
            study.run()
        result = analyse(study)
        atomic_write_text(Path(settings.out) / "study.json", json.dumps(result, indent=1))
        line = args.command_line or shlex.join(["psvit-nas", *rerun_args(args.argv)])
        write_results(Path(settings.results), result, settings, line)
    print(f"wrote {settings.results} and {Path(settings.out) / 'study.json'}")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """This group's subcommands and their arguments."""
    from ..study import STAGES
    from ..study.settings import StudySettings as D

    p = sub.add_parser("study", help="does a supernet rank architectures like training does? retrain a spread of "
                       "architectures with seeds, score them with supernets, compare (parallel Ray Tune trials)")
    p.add_argument("--config", required=True, help="search space YAML")
    p.add_argument("--data", required=True, help="a Tiny-ImageNet-layout folder, or digits, cifar10, cifar100")
    p.add_argument("--out", required=True, help="records (commit them) and study.json")
    p.add_argument("--work", help="run folders and checkpoints (default: OUT/work)")
    p.add_argument("--results", help="the markdown report, its plot beside it (default: OUT/results.md)")
    p.add_argument("--classes", type=int, default=D.classes, help="first N classes of a Tiny-ImageNet folder")
    p.add_argument("--spread", type=int, default=D.spread, help="architectures spread over the MACs range")
    p.add_argument("--window", type=int, default=D.window, help="architectures inside the budget +-10 %%")
    p.add_argument("--budget", help="window centre in MACs, e.g. 17.5M (default: median of uniform paths)")
    p.add_argument("--extra", nargs="+", default=[], metavar="NAME=ARCH", help="named architectures joining the "
                   "window group: all-CHOICE (e.g. layers=all-layer, the DeiT-style stack), an arch string or a "
                   "spec file")
    p.add_argument("--family", type=int, nargs="+", default=[], metavar="DEPTH", help="the hand-designed family: "
                   "layersD has D layer cells per stage and identity in the rest (e.g. 1 2 3 4 5 6), retrained with "
                   "--named-seeds as named architectures of their own group")
    p.add_argument("--seeds", type=int, nargs="+", default=list(D.seeds))
    p.add_argument("--named-seeds", type=int, nargs="+", help="seeds of the named architectures (--extra), "
                   "including every --seeds seed: more seeds where the search's pick is judged against the "
                   "baseline (default: --seeds)")
    p.add_argument("--epochs", type=int, default=D.epochs, help="retraining epochs per architecture")
    p.add_argument("--supernet-epochs", type=int, default=D.supernet_epochs, help="uniform-path epochs' worth of "
                   "compute per supernet (multi-path samplers get fewer epochs)")
    p.add_argument("--score-every", type=int, default=D.score_every, help="also score every architecture at the "
                   "supernets' checkpoints every N uniform-path epochs' worth of images (0: the last only): tau "
                   "against supernet training")
    p.add_argument("--samplers", nargs="+", default=list(D.samplers), help="one supernet per sampler")
    p.add_argument("--distill-weight", type=float, default=D.distill_weight, help="sandwich: distillation share "
                   "of the students' loss")
    p.add_argument("--holdout", type=int, default=D.holdout, help="training images held out for fitness")
    p.add_argument("--gt-holdout", type=int, default=D.gt_holdout, help="training images per class moved from "
                   "the retrainings' training set to their validation set (never a fitness image): a less noisy "
                   "ground truth")
    p.add_argument("--population", type=int, default=D.population)
    p.add_argument("--generations", type=int, default=D.generations)
    p.add_argument("--batch-size", type=int, default=D.batch_size)
    p.add_argument("--lr", type=float, default=D.lr, help="supernet learning rate")
    p.add_argument("--retrain-lr", type=float, default=D.retrain_lr)
    p.add_argument("--seed", type=int, default=D.seed, help="which architectures are drawn")
    p.add_argument("--finalize-topk", type=int, default=D.finalize_topk, help="finalize: top-k of the evolution "
                   "search")
    p.add_argument("--tune-samples", type=int, default=D.tune_samples, help="tune: recipes tried (default first)")
    p.add_argument("--probe-archs", type=int, default=D.probe_archs, help="spread architectures retrained once "
                   "more, with the first seed, for --probe-epochs (0: no schedule probe)")
    p.add_argument("--probe-epochs", type=int, default=D.probe_epochs)
    p.add_argument("--stages", nargs="+", default=list(STAGES), help=f"what to run, of {', '.join(STAGES)} "
                   "(default: all)")
    p.add_argument("--cpus-per-trial", type=int, default=None, help="CPU threads per trial (default: 1 on a "
                   "CPU machine, where two 1-thread trials beat one 2-thread run; with GPUs, the CPUs per GPU)")
    p.add_argument("--ray-address", default=None, help="Ray cluster address, e.g. auto (default: start locally)")
    p.add_argument("--est-images-per-s", type=float, default=D.est_images_per_s, help="one trial's training "
                   "speed, for the time estimate")
    p.add_argument("--goals", choices=["ranking", "settled"], default=D.goals, help="the goals the report opens "
                   "with (default settled: a settled ground truth, supernets that rank by it, a search that pays; "
                   "ranking: the earlier studies' ground truth, supernets and evolution against random)")
    p.add_argument("--report-only", action="store_true", help="write the report from the records, run nothing")
    p.add_argument("--command-line", help=argparse.SUPPRESS)  # what the report shows (scripts/study_ranking.py)

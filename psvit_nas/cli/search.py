"""`evolve`: search a trained supernet under a MACs and/or latency budget."""
from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..space import parse_budget
from .common import add_bn_batches_arg, add_cache_args, add_run_folder_args, cache_config, check_numbers, command

@command("evolve")
def cmd_evolve(args: argparse.Namespace) -> None:
    from ..rankers import fitness_set_for
    from ..search import SearchConfig, evolve
    from ..train import read_supernet

    from ..io import run_folder
    from ..latency import LatencyTable, parse_latency

    check_numbers(args, positive=("population", "generations", "threads"), share=("mutation_prob",))
    if not (args.flops or args.latency or (args.strategy == "nsga2" and args.latency_table)):
        raise ConfigError(None, "--flops/--latency", "give a MACs budget (--flops 1.3G), a latency budget "
                          "(--latency 25ms --latency-table lut.json), or both")
    if args.latency and not args.latency_table:
        raise ConfigError(None, "--latency-table", "a latency budget needs a table; measure one with "
                          "psvit-nas latency --config SPACE --out lut.json")
    max_macs = parse_budget(args.flops, field_name="--flops") if args.flops else None
    min_macs = parse_budget(args.min_flops, field_name="--min-flops") if args.min_flops else None
    max_latency = parse_latency(args.latency) if args.latency else None
    latency = LatencyTable.load(args.latency_table) if args.latency_table else None
    cfg = SearchConfig(strategy=args.strategy, population=args.population, generations=args.generations,
                       topk=args.topk, mutation_prob=args.mutation_prob, max_macs=max_macs, min_macs=min_macs,
                       max_latency_ms=max_latency, seed=args.seed)
    supernet = read_supernet(args.supernet)  # read once: run settings, weights and digest
    fitness = fitness_set_for(supernet.state, args.supernet, args.data, args.data_dir, args.search_val_size,
                              args.bn_batches)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with run_folder(args.out, args.resume, args.force):
        evolve(supernet, cfg, fitness, args.out, backend=args.backend, ray_address=args.ray_address,
               workers=args.ray_workers, resume=args.resume, cache=cache_config(args), latency=latency,
               ranker=args.fitness, records=args.records, finetune_steps=args.finetune_steps, fewshot=args.fewshot)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """This group's subcommands and their arguments."""
    p = sub.add_parser("evolve", help="search a trained supernet under a MACs and/or latency budget")
    p.add_argument("--supernet", required=True, help="train-supernet checkpoint (last.pt)")
    p.add_argument("--flops", help="MACs budget, e.g. 1.3G")
    p.add_argument("--latency", help="predicted-latency budget, e.g. 25ms (needs --latency-table)")
    p.add_argument("--latency-table", help="a table from psvit-nas latency; with --strategy nsga2 and no "
                   "--latency, the search trades accuracy against predicted latency")
    p.add_argument("--min-flops", help="smallest MACs, e.g. 1.0G")
    p.add_argument("--data", default=None, help="dataset (default: the supernet's)")
    p.add_argument("--data-dir", default=None, help="where cifar10/cifar100 live (default: the supernet's)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--strategy", default="evolution", help="evolution | random | nsga2")
    p.add_argument("--population", type=int, default=50)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--topk", type=int, default=10, help="parents kept per generation")
    p.add_argument("--mutation-prob", type=float, default=0.1, help="per-cell mutation probability")
    p.add_argument("--search-val-size", type=int, default=None,
                   help="held-out training images scoring each candidate (default: all the supernet held out)")
    add_bn_batches_arg(p)
    p.add_argument("--fitness", default="debiased", metavar="RANKER",
                   help="what scores candidates: debiased (the default: top-1 with inherited weights less the "
                   "supernet's own trend with MACs, measured on reference paths), supernet (that top-1 as it is), "
                   "synflow, "
                   "naswot, grad_norm, snip, dss (training-free proxies), finetune (a few steps from inherited "
                   "weights), calibrated (a regression fitted on --records), fewshot (sub-supernets of --fewshot); "
                   "see docs/rankers.md")
    p.add_argument("--records", default=None, help="--fitness calibrated: a study's records folder to fit on")
    p.add_argument("--fewshot", default=None, help="--fitness fewshot: a folder from psvit-nas few-shot (its "
                   "parts split this --supernet)")
    p.add_argument("--finetune-steps", type=int, default=20, help="--fitness finetune: SGD steps per candidate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="CPU threads scoring candidates (default: torch's, "
                   "the cores). On a machine busy with other work use 1: 2 threads beside two training runs on "
                   "2 cores scored 21x slower")
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--ray-address", default=None, help="Ray cluster address, e.g. auto (default: start locally)")
    p.add_argument("--ray-workers", type=int, default=None, help="Ray actors (default: GPUs, else CPUs)")
    add_run_folder_args(p, "continue the search saved in OUT")
    add_cache_args(p)

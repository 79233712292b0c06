"""`evolve`: search a trained supernet under a budget."""
from __future__ import annotations

import argparse

from ..space import parse_budget
from .common import add_cache_args, cache_config, command

@command("evolve")
def cmd_evolve(args: argparse.Namespace) -> None:
    from ..search import SearchConfig, evolve, fitness_set_for, load_supernet

    max_macs = parse_budget(args.flops, field_name="--flops")
    min_macs = parse_budget(args.min_flops, field_name="--min-flops") if args.min_flops else None
    cfg = SearchConfig(strategy=args.strategy, population=args.population, generations=args.generations,
                       topk=args.topk, mutation_prob=args.mutation_prob, max_macs=max_macs, min_macs=min_macs,
                       seed=args.seed)
    _, checkpoint = load_supernet(args.supernet)
    fitness = fitness_set_for(checkpoint, args.supernet, args.data, args.data_dir, args.search_val_size,
                              args.bn_batches)
    evolve(args.supernet, cfg, fitness, args.out, backend=args.backend, ray_address=args.ray_address,
           workers=args.ray_workers, resume=args.resume, cache=cache_config(args))


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """This group's subcommands and their arguments."""
    p = sub.add_parser("evolve", help="search a trained supernet under a MACs budget")
    p.add_argument("--supernet", required=True, help="train-supernet checkpoint (last.pt)")
    p.add_argument("--flops", required=True, help="MACs budget, e.g. 1.3G")
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
    p.add_argument("--bn-batches", type=int, default=10, help="training batches for BatchNorm recalibration")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--ray-address", default=None, help="Ray cluster address, e.g. auto (default: start locally)")
    p.add_argument("--ray-workers", type=int, default=None, help="Ray actors (default: GPUs, else CPUs)")
    p.add_argument("--resume", action="store_true", help="continue the search saved in OUT")
    add_cache_args(p)

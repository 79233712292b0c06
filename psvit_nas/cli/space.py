"""`space`, `sample`, `flops`: describe a search space and the cost of its architectures."""
from __future__ import annotations

import argparse
import json
import random

from ..cost import count_cost
from ..limits import budget
from ..space import ArchSpec, SearchSpace, format_macs, parse_budget
from .common import command, format_params

@command("space")
def cmd_space(args: argparse.Namespace) -> None:
    space = SearchSpace.from_yaml(args.config)
    table = space.cost_table
    median = space.median_macs()
    info = {
        "name": space.name, "image_size": space.image_size, "num_classes": space.num_classes,
        "patch_size": space.patch_size, "pooling": space.pooling,
        "stages": [{"tokens": "x".join(map(str, shape)) + ("+cls" if space.has_cls else ""),
                    "width": st.width, "heads": st.heads, "mlp_ratio": st.mlp_ratio, "cells": st.cells,
                    "choices": list(st.choices)} for st, shape in zip(space.stages, space.token_shapes)],
        "num_archs": space.num_archs,
        "macs": {"min": table.macs_range[0], "median_uniform": int(median), "max": table.macs_range[1]},
        "params": {"min": table.params_range[0], "max": table.params_range[1]},
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return
    print(f"space {space.name}: {space.image_size}x{space.image_size} images, {space.num_classes} classes, "
          f"patch {space.patch_size}, {space.pooling} pooling")
    print(f"{'stage':<6}{'tokens':>10}{'width':>7}{'heads':>7}{'mlp':>5}{'cells':>7}  choices")
    for i, st in enumerate(info["stages"], 1):
        print(f"{i:<6}{st['tokens']:>10}{st['width']:>7}{st['heads']:>7}{st['mlp_ratio']:>5g}{st['cells']:>7}  "
              f"{', '.join(st['choices'])}")
    print(f"architectures: {space.num_archs:,} ({space.num_archs:.3g})")
    print(f"MACs:   min {format_macs(table.macs_range[0])}  median of uniform samples {format_macs(median)}  "
          f"max {format_macs(table.macs_range[1])}")
    print(f"params: min {format_params(table.params_range[0])}  max {format_params(table.params_range[1])}")


@command("sample")
def cmd_sample(args: argparse.Namespace) -> None:
    space = SearchSpace.from_yaml(args.config)
    max_macs = parse_budget(args.max_flops, field_name="--max-flops") if args.max_flops else None
    min_macs = parse_budget(args.min_flops, field_name="--min-flops") if args.min_flops else None
    limits = budget(space, max_macs, min_macs, source=args.config, options=("--max-flops", "--min-flops"))
    arch = space.sample(random.Random(args.seed), limits)
    cost = space.cost_table(arch)
    spec = space.spec(arch, macs=cost.macs, params=cost.params)
    if args.out:
        spec.to_yaml(args.out)
        print(f"wrote {args.out}: {arch} ({format_macs(cost.macs)} MACs, {format_params(cost.params)} params)")
    else:
        import yaml

        print(yaml.safe_dump(spec.to_dict(), sort_keys=False, default_flow_style=None), end="")


@command("flops")
def cmd_flops(args: argparse.Namespace) -> None:
    spec = ArchSpec.from_yaml(args.arch)
    cost = count_cost(spec)
    if args.json:
        print(json.dumps({"macs": cost.macs, "params": cost.params,
                          "parts": {k: {"macs": m, "params": p} for k, (m, p) in cost.parts.items()}}, indent=2))
        return
    print(f"{args.arch}: {spec.arch}")
    print(f"{'part':<8}{'MACs':>12}{'params':>12}")
    for name, (macs, params) in cost.parts.items():
        print(f"{name:<8}{format_macs(macs):>12}{format_params(params):>12}")
    print(f"{'total':<8}{format_macs(cost.macs):>12}{format_params(cost.params):>12}")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """This group's subcommands and their arguments."""
    p = sub.add_parser("space", help="describe a search space")
    p.add_argument("--config", required=True, help="search space YAML")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("sample", help="write a random architecture spec, optionally under a MACs budget")
    p.add_argument("--config", required=True, help="search space YAML")
    p.add_argument("--max-flops", help="largest MACs, e.g. 1.3G")
    p.add_argument("--min-flops", help="smallest MACs, e.g. 1.0G")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="spec YAML to write (default: print it)")

    p = sub.add_parser("flops", help="MACs and params of an architecture spec, per stage and in total")
    p.add_argument("arch", help="architecture spec YAML")
    p.add_argument("--json", action="store_true", help="print JSON")

"""The `psvit-nas` command."""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path
from typing import Callable, Sequence

from .cost import count_cost
from .errors import ConfigError
from .space import Arch, ArchSpec, SearchSpace, format_macs, parse_budget

COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


def _params(n: float) -> str:
    return f"{n / 1e6:.3f}M"


@command("space")
def cmd_space(args: argparse.Namespace) -> None:
    space = SearchSpace.from_yaml(args.config)
    table = space.cost_table
    rng = random.Random(0)
    median = statistics.median(table.macs(space.sample(rng)) for _ in range(2000))
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
    print(f"params: min {_params(table.params_range[0])}  max {_params(table.params_range[1])}")


@command("sample")
def cmd_sample(args: argparse.Namespace) -> None:
    space = SearchSpace.from_yaml(args.config)
    max_macs = parse_budget(args.max_flops, field_name="--max-flops") if args.max_flops else None
    min_macs = parse_budget(args.min_flops, field_name="--min-flops") if args.min_flops else None
    space.check_budget(max_macs, min_macs, source=args.config, fields=("--max-flops", "--min-flops"))
    arch = space.sample(random.Random(args.seed), max_macs=max_macs, min_macs=min_macs)
    cost = space.cost_table(arch)
    spec = space.spec(arch, macs=cost.macs, params=cost.params)
    if args.out:
        spec.to_yaml(args.out)
        print(f"wrote {args.out}: {arch} ({format_macs(cost.macs)} MACs, {_params(cost.params)} params)")
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
        print(f"{name:<8}{format_macs(macs):>12}{_params(params):>12}")
    print(f"{'total':<8}{format_macs(cost.macs):>12}{_params(cost.params):>12}")


def _cache(args: argparse.Namespace):
    """The decoded-image cache settings of a command's data arguments."""
    from .data import CacheConfig

    limit = parse_budget(args.cache_limit, field_name="--cache-limit")
    return CacheConfig(args.cache, args.cache_dir, limit, _workers(args))


def _workers(args: argparse.Namespace) -> int:
    from .data import default_workers

    return default_workers() if args.workers is None else args.workers


def _train_config(args: argparse.Namespace, space: SearchSpace):
    from .data import Augment
    from .train import TrainConfig

    flops_range = None
    if getattr(args, "flops_range", None):
        flops_range = tuple(parse_budget(v, field_name="--flops-range") for v in args.flops_range)
    aug = Augment.preset(args.augment, space.image_size)
    for name in ("mixup", "cutmix", "label_smoothing", "random_erasing"):
        if getattr(args, name) is not None:
            setattr(aug, name, getattr(args, name))
    if args.checkpoint_every_steps < 0:
        raise ConfigError(None, "--checkpoint-every-steps", f"expected 0 (off) or a positive step count, got "
                          f"{args.checkpoint_every_steps}")
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr,
                       weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                       clip_grad=args.clip_grad or None, ema=args.ema, amp=args.amp, seed=args.seed,
                       workers=_workers(args), save_every=args.save_every,
                       checkpoint_every_steps=args.checkpoint_every_steps, compile=args.compile,
                       val_archs=getattr(args, "val_archs", 1), sampler=getattr(args, "sampler", "uniform"),
                       sandwich_k=getattr(args, "sandwich_k", 2), flops_range=flops_range, augment=aug.to_dict())


def _fit(args: argparse.Namespace, model, space: SearchSpace, arch: Arch | None, holdout: int | None) -> None:
    """Train with the shared loop; `holdout` training images are kept out for the search (None: 10 %, <= 10k)."""
    import torch

    from .data import holdout_split, load_images, num_classes
    from .train import Dist, fit

    cfg = _train_config(args, space)
    Dist.from_env()  # join the process group first: rank 0 builds the image cache, the others wait
    cache = _cache(args)
    train_set = load_images(args.data, "train", space, args.data_dir, cache)
    val_set = load_images(args.data, "val", space, args.data_dir, cache)
    if holdout is None:
        holdout = min(len(train_set) // 10, 10_000)
    keep, held = holdout_split(len(train_set), holdout)
    if held:
        train_set = torch.utils.data.Subset(train_set, keep)
    run_config = {"command": " ".join(sys.argv), "data": args.data, "data_dir": args.data_dir,
                  "num_classes": num_classes(val_set), "search_holdout": holdout,
                  "train_images": len(train_set), "val_images": len(val_set)}
    torch.manual_seed(args.seed)
    fit(model, space, train_set, val_set, cfg, args.out, arch=arch, resume=args.resume, run_config=run_config)


@command("train-supernet")
def cmd_train_supernet(args: argparse.Namespace) -> None:
    import torch

    from .supernet import Supernet

    space = SearchSpace.from_yaml(args.config)
    torch.manual_seed(args.seed)
    _fit(args, Supernet(space), space, None, args.search_holdout)


@command("train")
def cmd_train(args: argparse.Namespace) -> None:
    import torch

    from .model import PSViT

    spec = ArchSpec.from_yaml(args.arch)
    torch.manual_seed(args.seed)
    _fit(args, PSViT.from_spec(spec), spec.space, spec.arch, 0)


def load_weights(path: str, spec: ArchSpec):
    """A PSViT for `spec` with the weights of an exported model.pt or a standalone training checkpoint."""
    import torch

    from .model import PSViT
    from .train import load_checkpoint

    model = PSViT.from_spec(spec)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(path, None, "weights file not found") from None
    except Exception as err:
        raise ConfigError(path, None, f"not a readable weights file ({err.__class__.__name__})") from None
    if isinstance(state, dict) and "model" in state and "space" in state:
        state = load_checkpoint(path, spec.space)["model"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise ConfigError(path, "weights", f"do not fit the architecture in the spec "
                          f"({str(err).splitlines()[0]})") from None
    return model


def _fitness_set(spec: ArchSpec, checkpoint: dict, args: argparse.Namespace):
    """The images a spec was scored on (from its best.yaml record), else the supernet's held-out images."""
    from .search import FitnessSet, fitness_set_for

    if "fitness_set" in spec.metrics:
        return FitnessSet(**spec.metrics["fitness_set"])
    return fitness_set_for(checkpoint, args.supernet, None, None, None, args.bn_batches)


def _inherited_model(args: argparse.Namespace, spec: ArchSpec):
    """The spec's path of the supernet in args.supernet, BatchNorm recalibrated as in the search."""
    from .search import inherited_model, load_supernet

    net, checkpoint = load_supernet(args.supernet)
    if net.space != spec.space:
        raise ConfigError(args.arch, "space", f"spec is from space {spec.space.name!r}, but the supernet in "
                          f"{args.supernet} was trained on {net.space.name!r}")
    return inherited_model(net, spec.arch,
                           lambda: _fitness_set(spec, checkpoint, args).load(spec.space, _cache(args))[1])


def _model(args: argparse.Namespace, spec: ArchSpec):
    """The model named by --weights (standalone) or --supernet (inherited weights)."""
    if bool(args.weights) == bool(args.supernet):
        raise ConfigError(None, "--weights/--supernet", "give exactly one of --weights and --supernet")
    return _inherited_model(args, spec) if args.supernet else load_weights(args.weights, spec)


@command("eval")
def cmd_eval(args: argparse.Namespace) -> None:
    from .data import EvalBatches, load_images
    from .evaluate import evaluate
    from .search import FitnessSet

    spec = ArchSpec.from_yaml(args.arch)
    model = _model(args, spec)
    if args.split == "search":
        if "fitness_set" not in spec.metrics:
            raise ConfigError(args.arch, "fitness_set", "this spec records no search images; use a best.yaml "
                              "written by evolve, or --split val")
        batches = FitnessSet(**spec.metrics["fitness_set"]).load(spec.space, _cache(args))[0]
        where = "held-out training (search) images"
    else:
        val_set = load_images(args.data, "val", spec.space, args.data_dir, _cache(args))
        batches = EvalBatches(val_set, spec.space.image_size, args.batch_size, workers=_workers(args))
        where = f"{args.data} validation images"
    result = evaluate(model, batches)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.arch}: top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  loss {result['loss']:.4f}  "
              f"{result['images_per_s']:.0f} img/s on {result['images']} {where}")


@command("evolve")
def cmd_evolve(args: argparse.Namespace) -> None:
    from .search import SearchConfig, evolve, fitness_set_for, load_supernet

    max_macs = parse_budget(args.flops, field_name="--flops")
    min_macs = parse_budget(args.min_flops, field_name="--min-flops") if args.min_flops else None
    cfg = SearchConfig(strategy=args.strategy, population=args.population, generations=args.generations,
                       topk=args.topk, mutation_prob=args.mutation_prob, max_macs=max_macs, min_macs=min_macs,
                       seed=args.seed)
    _, checkpoint = load_supernet(args.supernet)
    fitness = fitness_set_for(checkpoint, args.supernet, args.data, args.data_dir, args.search_val_size,
                              args.bn_batches)
    evolve(args.supernet, cfg, fitness, args.out, backend=args.backend, ray_address=args.ray_address,
           workers=args.ray_workers, resume=args.resume, cache=_cache(args))


@command("export")
def cmd_export(args: argparse.Namespace) -> None:
    import torch

    from .io import atomic_write

    spec = ArchSpec.from_yaml(args.arch)
    model = _inherited_model(args, spec)
    atomic_write(args.out, lambda tmp: torch.save(model.state_dict(), tmp))
    cost = count_cost(spec)
    print(f"wrote {args.out}: {spec.arch} ({format_macs(cost.macs)} MACs, {_params(cost.params)} params); load it "
          f"with PSViT.from_spec(ArchSpec.from_yaml(...)).load_state_dict(torch.load(...))")


@command("analyze")
def cmd_analyze(args: argparse.Namespace) -> None:
    import torch

    from .analysis import analyze, write_report
    from .data import EvalBatches, load_images

    spec = ArchSpec.from_yaml(args.arch)
    model = _model(args, spec)
    val_set = load_images(args.data, "val", spec.space, args.data_dir, _cache(args))
    first = torch.utils.data.Subset(val_set, range(min(args.images, len(val_set))))
    images = torch.cat([x for x, _ in EvalBatches(first, spec.space.image_size)])
    result = analyze(model, images, args.threshold)
    write_report(result, args.out)
    share = result["adjacent_share_above"]
    print(f"{len(result['layers'])} attention layers, {result['images']} validation images: "
          f"{result['adjacent_above']} of {result['adjacent_pairs']} adjacent layer pairs "
          f"({100 * share:.0f} %) have attention-map similarity above {args.threshold}")
    print(f"wrote {Path(args.out) / 'attention_similarity.png'} and attention_similarity.json")


def _add_cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None, help="data-loading processes for streamed data and "
                   "cache building (default: the CPUs per process, at most 8)")
    p.add_argument("--cache", choices=["auto", "on", "off"], default="auto", help="decoded-image cache (auto: "
                   "for splits under --cache-limit; off: decode every epoch)")
    p.add_argument("--cache-dir", default=None, help="where decoded images are cached (default: "
                   "$PSVIT_NAS_CACHE_DIR or ~/.cache/psvit-nas)")
    p.add_argument("--cache-limit", default="16G", help="largest decoded split cached under --cache auto, in "
                   "bytes (e.g. 16G)")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="digits", help="digits | cifar10 | cifar100 | a Tiny-ImageNet or "
                   "ImageFolder root (default: digits)")
    p.add_argument("--data-dir", default="data", help="where cifar10/cifar100 live or are downloaded")
    _add_cache_args(p)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    _add_data_args(p)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--clip-grad", type=float, default=5.0, help="max gradient norm (0: off)")
    p.add_argument("--ema", type=float, default=None, help="EMA decay of the weights, e.g. 0.9998 (default off)")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto", help="bf16 autocast (auto: on CUDA)")
    p.add_argument("--augment", default="auto", help="auto | none | light | deit (auto: by image size)")
    p.add_argument("--mixup", type=float, help="mixup alpha (0: off), overriding the --augment preset")
    p.add_argument("--cutmix", type=float, help="cutmix alpha (0: off), overriding the preset")
    p.add_argument("--label-smoothing", type=float, help="overriding the preset")
    p.add_argument("--random-erasing", type=float, help="probability, overriding the preset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=0, help="also keep epochN.pt every N epochs")
    p.add_argument("--checkpoint-every-steps", type=int, default=0, help="also write last.pt every N steps "
                   "inside an epoch; --resume continues from that step (default 0: at epoch ends only)")
    p.add_argument("--compile", action="store_true", help="torch.compile each cell (regional: a new path "
                   "reuses compiled cells)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="psvit-nas", description="Neural architecture search for PSViT "
                                     "vision transformers (FLOPs are multiply-accumulates, MACs).")
    sub = parser.add_subparsers(dest="command", required=True)

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

    p = sub.add_parser("train-supernet", help="train a supernet by SPOS (one uniform path per step)")
    p.add_argument("--config", required=True, help="search space YAML")
    _add_train_args(p)
    p.add_argument("--flops-range", nargs=2, metavar=("MIN", "MAX"), help="sample only paths in this MACs range")
    p.add_argument("--search-holdout", type=int, default=None, help="training images held out for the search's "
                   "fitness (default: 10%%, at most 10,000)")
    p.add_argument("--val-archs", type=int, default=3, help="fixed paths whose mean accuracy is reported")
    p.add_argument("--sampler", choices=["uniform", "fair", "sandwich"], default="uniform",
                   help="paths per optimizer step: uniform (SPOS, one path), fair (FairNAS: every choice of every "
                   "cell once), sandwich (largest, smallest and --sandwich-k random paths, in-place distillation)")
    p.add_argument("--sandwich-k", type=int, default=2, help="random paths per sandwich step")

    p = sub.add_parser("train", help="train a standalone model from scratch")
    p.add_argument("--arch", required=True, help="architecture spec YAML")
    _add_train_args(p)

    p = sub.add_parser("eval", help="top-1, top-5, loss and images/s on the validation split")
    p.add_argument("--arch", required=True, help="architecture spec YAML")
    p.add_argument("--weights", help="model.pt from export, or a train checkpoint")
    p.add_argument("--supernet", help="a train-supernet checkpoint; the spec's path is evaluated")
    _add_data_args(p)
    p.add_argument("--split", choices=["val", "search"], default="val",
                   help="val: the validation set; search: the held-out training images recorded in best.yaml")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--bn-batches", type=int, default=10, help="training batches for BatchNorm recalibration")
    p.add_argument("--json", action="store_true", help="print JSON")

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
    _add_cache_args(p)

    p = sub.add_parser("analyze", help="attention-map similarity between layers and heads (DeepViT's metric)")
    p.add_argument("--arch", required=True, help="architecture spec YAML")
    p.add_argument("--weights", help="model.pt from export, or a train checkpoint")
    p.add_argument("--supernet", help="a train-supernet checkpoint; the spec's path is analysed")
    _add_data_args(p)
    p.add_argument("--out", default=".", help="folder for attention_similarity.png/.json")
    p.add_argument("--images", type=int, default=64, help="fixed validation images analysed")
    p.add_argument("--threshold", type=float, default=0.8)
    p.add_argument("--bn-batches", type=int, default=10, help="training batches for BatchNorm recalibration")

    p = sub.add_parser("export", help="a standalone model.pt with the path's inherited weights")
    p.add_argument("--supernet", required=True, help="train-supernet checkpoint")
    p.add_argument("--arch", required=True, help="architecture spec (best.yaml)")
    p.add_argument("--out", required=True, help="model.pt to write")
    p.add_argument("--data", default=None, help="dataset for BatchNorm recalibration (default: the supernet's)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--bn-batches", type=int, default=10)
    _add_cache_args(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .train import NonFiniteLoss

    try:
        COMMANDS[args.command](args)
    except ConfigError as err:
        print(f"psvit-nas {args.command}: error: {err.one_line()}", file=sys.stderr)
        return 2
    except NonFiniteLoss as err:
        print(f"psvit-nas {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

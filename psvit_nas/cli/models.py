"""`eval`, `analyze`: a searched architecture with standalone or inherited weights."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError
from ..space import ArchSpec
from .common import add_bn_batches_arg, add_data_args, add_run_folder_args, cache_config, command, loader_workers


def _fitness_set(spec: ArchSpec, checkpoint: dict, args: argparse.Namespace):
    """The images a spec was scored on (from its best.yaml record), else the supernet's held-out images."""
    from ..rankers import FitnessSet, fitness_set_for

    if "fitness_set" in spec.metrics:
        return FitnessSet(**spec.metrics["fitness_set"])
    return fitness_set_for(checkpoint, args.supernet, None, None, None, args.bn_batches)


def _inherited_model(args: argparse.Namespace, spec: ArchSpec):
    """The spec's path of the supernet in args.supernet, BatchNorm recalibrated as in the search."""
    from ..rankers import inherited_model
    from ..train import load_supernet

    net, checkpoint = load_supernet(args.supernet)
    if net.space != spec.space:
        raise ConfigError(args.arch, "space", f"spec is from space {spec.space.name!r}, but the supernet in "
                          f"{args.supernet} was trained on {net.space.name!r}")
    return inherited_model(net, spec.arch,
                           lambda: _fitness_set(spec, checkpoint, args).load(spec.space, cache_config(args))[1])


def inherited_or_standalone(args: argparse.Namespace, spec: ArchSpec):
    """The model named by --weights (standalone) or --supernet (inherited weights)."""
    if bool(args.weights) == bool(args.supernet):
        raise ConfigError(None, "--weights/--supernet", "give exactly one of --weights and --supernet")
    from ..train import load_weights

    return _inherited_model(args, spec) if args.supernet else load_weights(args.weights, spec)


@command("eval")
def cmd_eval(args: argparse.Namespace) -> None:
    from ..data import EvalBatches, load_images
    from ..evaluate import evaluate
    from ..rankers import FitnessSet

    spec = ArchSpec.from_yaml(args.arch)
    model = inherited_or_standalone(args, spec)
    if args.split == "search":
        if "fitness_set" not in spec.metrics:
            raise ConfigError(args.arch, "fitness_set", "this spec records no search images; use a best.yaml "
                              "written by evolve, or --split val")
        batches = FitnessSet(**spec.metrics["fitness_set"]).load(spec.space, cache_config(args))[0]
        where = "held-out training (search) images"
    else:
        val_set = load_images(args.data, "val", spec.space, args.data_dir, cache_config(args))
        batches = EvalBatches(val_set, spec.space.image_size, args.batch_size, workers=loader_workers(args))
        where = f"{args.data} validation images"
    result = evaluate(model, batches)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.arch}: top-1 {result['top1']:.2f}%  top-5 {result['top5']:.2f}%  loss {result['loss']:.4f}  "
              f"{result['images_per_s']:.0f} img/s on {result['images']} {where}")


@command("analyze")
def cmd_analyze(args: argparse.Namespace) -> None:
    import torch

    from ..analysis import analyze, write_report
    from ..data import EvalBatches, load_images
    from ..io import run_folder

    spec = ArchSpec.from_yaml(args.arch)
    model = inherited_or_standalone(args, spec)
    val_set = load_images(args.data, "val", spec.space, args.data_dir, cache_config(args))
    with run_folder(args.out, force=args.force):
        first = torch.utils.data.Subset(val_set, range(min(args.images, len(val_set))))
        images = torch.cat([x for x, _ in EvalBatches(first, spec.space.image_size)])
        result = analyze(model, images, args.threshold)
        write_report(result, args.out)
    share = result["adjacent_share_above"]
    print(f"{len(result['layers'])} attention layers, {result['images']} validation images: "
          f"{result['adjacent_above']} of {result['adjacent_pairs']} adjacent layer pairs "
          f"({100 * share:.0f} %) have attention-map similarity above {args.threshold} "
          f"(the {result['share_pairs']} share pairs, one map each, left out)")
    entropy = [e for e in result["entropy"] if e == e]
    if entropy:
        print(f"attention entropy relative to a uniform map: {min(entropy):.2f} to {max(entropy):.2f} "
              "(near 1: near-uniform maps, alike without meaning much)")
    print(f"wrote {Path(args.out) / 'attention_similarity.png'} and attention_similarity.json")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """This group's subcommands and their arguments."""
    p = sub.add_parser("eval", help="top-1, top-5, loss and images/s on the validation split")
    p.add_argument("--arch", required=True, help="architecture spec YAML")
    p.add_argument("--weights", help="model.safetensors or model.pt from export, or a train checkpoint")
    p.add_argument("--supernet", help="a train-supernet checkpoint; the spec's path is evaluated")
    add_data_args(p)
    p.add_argument("--split", choices=["val", "search"], default="val",
                   help="val: the validation set; search: the held-out training images recorded in best.yaml")
    p.add_argument("--batch-size", type=int, default=128)
    add_bn_batches_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("analyze", help="attention-map similarity between layers and heads (DeepViT's metric)")
    p.add_argument("--arch", required=True, help="architecture spec YAML")
    p.add_argument("--weights", help="model.safetensors or model.pt from export, or a train checkpoint")
    p.add_argument("--supernet", help="a train-supernet checkpoint; the spec's path is analysed")
    add_data_args(p)
    p.add_argument("--out", required=True, help="folder for attention_similarity.png/.json")
    p.add_argument("--images", type=int, default=64, help="fixed validation images analysed")
    p.add_argument("--threshold", type=float, default=0.8)
    add_run_folder_args(p, None)
    add_bn_batches_arg(p)

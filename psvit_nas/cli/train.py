"""`train-supernet` and `train`: the shared training loop on decoded, cached images."""
from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from ..samplers import SAMPLERS
from ..space import Arch, ArchSpec, SearchSpace, parse_budget
from .common import (add_cache_args, add_run_folder_args, add_train_args, cache_config, check_numbers, command,
                     loader_workers)

def _train_config(args: argparse.Namespace, space: SearchSpace):
    """The loop's settings from the command line (`train.recipe.train_config`), bad values refused first."""
    from ..data.augment import check_randaugment
    from ..train.recipe import train_config

    check_numbers(args, positive=("epochs", "batch_size", "lr", "lr_batch", "repeated_aug"),
                  share=("distill_weight", "random_erasing", "ema", "drop_path"),
                  at_least_0=("min_lr", "weight_decay", "warmup_epochs", "clip_grad", "save_every", "workers",
                              "checkpoint_every_steps", "mixup", "cutmix", "label_smoothing", "sandwich_k",
                              "bn_batches"))
    flops_range = None
    if getattr(args, "flops_range", None):
        flops_range = tuple(parse_budget(v, field_name="--flops-range") for v in args.flops_range)
    if args.randaugment:
        check_randaugment(args.randaugment, None, "--randaugment")
    return train_config(space, {**vars(args), "workers": loader_workers(args), "flops_range": flops_range})


def _fit(args: argparse.Namespace, model, space: SearchSpace, arch: Arch | None, holdout: int | None,
         monitor: str = "val") -> None:
    """Train with the shared loop; `holdout` training images are kept out for the search (None: 10 %, <= 10k),
    each epoch scored on `monitor` ("val": the validation split, "search": the held-out images)."""
    from ..io import run_folder
    from ..train import fit_on

    cfg = _train_config(args, space)
    with run_folder(args.out, args.resume, args.force):
        fit_on(model, space, args.data, cfg, args.out, arch=arch, holdout=holdout, data_dir=args.data_dir,
               cache=cache_config(args), resume=args.resume, command=" ".join(sys.argv), monitor=monitor)


@command("train-supernet")
def cmd_train_supernet(args: argparse.Namespace) -> None:
    import torch

    from ..supernet import Supernet

    space = SearchSpace.from_yaml(args.config)
    if _checked_or_printed(args, space):
        return
    torch.manual_seed(args.seed)
    model = Supernet(space, args.drop_path)
    model.set_grad_checkpointing(args.grad_checkpointing)
    _fit(args, model, space, None, args.search_holdout, args.monitor)


@command("train")
def cmd_train(args: argparse.Namespace) -> None:
    import torch

    from ..model import PSViT
    from ..train import load_weights

    spec = ArchSpec.from_yaml(args.arch)
    if args.recipe:
        _apply_recipe(args)
    if args.num_classes is not None and args.num_classes < 1:
        raise ConfigError(None, "--num-classes", f"expected a positive number, got {args.num_classes}")
    if _checked_or_printed(args, spec.space):
        return
    torch.manual_seed(args.seed)
    model = PSViT.from_spec(spec, args.drop_path)
    if args.weights:  # fine-tuning an exported model
        model.load_state_dict(load_weights(args.weights, spec).state_dict())
    if args.num_classes:
        model.reset_classifier(args.num_classes)
    model.set_grad_checkpointing(args.grad_checkpointing)
    _fit(args, model, model.space, spec.arch, 0)


@command("few-shot")
def cmd_few_shot(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from ..io import run_folder
    from ..rankers.fewshot import train_parts
    from ..samplers import Split
    from ..train import TrainConfig, load_supernet

    check_numbers(args, positive=("epochs", "lr"), at_least_0=("warmup_epochs", "workers"))
    net, state = load_supernet(args.supernet)
    split = Split.parse(args.split, net.space)
    parent = TrainConfig(**state["config"])
    cfg = replace(parent, epochs=args.epochs, lr=args.lr or parent.lr, warmup_epochs=args.warmup_epochs,
                  workers=loader_workers(args), sampler="uniform", checkpoint_every_steps=0, save_every=0)
    parts = split.parts(net.space)
    print(f"{parts} parts of {split.text}, {args.epochs} epochs each from {args.supernet}: {parts * args.epochs} "
          "supernet epochs' compute in all")
    with run_folder(args.out, args.resume, args.force):
        train_parts(args.supernet, split, cfg, args.out, args.resume, cache_config(args))
    print(f"wrote {args.out}/fewshot.yaml; search with psvit-nas evolve --supernet {args.supernet} --fitness "
          f"fewshot --fewshot {args.out} ...")


def _checked_or_printed(args: argparse.Namespace, space: SearchSpace) -> bool:
    """Refuse bad options before the model is built; with --print-config, print what the run would use (the
    loop's settings, and the model's drop path) and say so."""
    from dataclasses import asdict

    import yaml

    cfg = _train_config(args, space)
    if args.print_config:
        print(yaml.safe_dump({"train": asdict(cfg), "model": {"drop_path": args.drop_path}}, sort_keys=False), end="")
    return args.print_config


def _apply_recipe(args: argparse.Namespace) -> None:
    """Take the recipe's values for every option not given on the command line (options given win, even when
    they equal the default, e.g. --drop-path 0 against DeiT's 0.1)."""
    from ..train.recipe import load_recipe

    given = argparse.ArgumentParser(add_help=False)
    add_train_args(given)
    unset = object()
    given.set_defaults(**{key: unset for key in vars(args)})
    explicit = {k for k, v in vars(given.parse_known_args(args.argv[1:])[0]).items() if v is not unset}
    for key, value in load_recipe(args.recipe).items():
        if hasattr(args, key) and key not in explicit:  # optimizer, schedule: what the loop does, no option
            setattr(args, key, value)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """This group's subcommands and their arguments."""
    p = sub.add_parser("train-supernet", help="train a weight-sharing supernet, one sampled set of paths per "
                       "step (--sampler: SPOS's uniform path, FairNAS, sandwich, FLOPs prior)")
    p.add_argument("--config", required=True, help="search space YAML")
    add_train_args(p)
    p.add_argument("--flops-range", nargs=2, metavar=("MIN", "MAX"), help="sample only paths in this MACs range")
    p.add_argument("--search-holdout", type=int, default=None, help="training images held out for the search's "
                   "fitness (default: 10%%, at most 10,000)")
    p.add_argument("--val-archs", type=int, default=3, help="fixed paths whose mean accuracy is reported")
    p.add_argument("--monitor", choices=("search", "val"), default="search", help="where those paths are scored "
                   "each epoch: search (default), the held-out training images, so that nothing on the way to "
                   "the searched model reads the validation images; val, the validation split")
    p.add_argument("--sampler", choices=SAMPLERS, default="uniform",
                   help="paths per optimizer step: uniform (SPOS, one path), fair (FairNAS: every choice of every "
                   "cell once), sandwich (largest, smallest and --sandwich-k random paths, in-place distillation), "
                   "flops (one path near a MACs target drawn uniformly over the range)")
    p.add_argument("--sandwich-k", type=int, default=2, help="random paths per sandwich step")
    p.add_argument("--distill-weight", type=float, default=0.5, help="sandwich: the students' loss is this share "
                   "distillation from the largest path, the rest cross-entropy on the labels (1: BigNAS's pure "
                   "in-place distillation)")

    p = sub.add_parser("few-shot", help="few-shot NAS: split a trained supernet along one decision into "
                       "sub-supernets, each warm-started from it and trained on its own part's paths")
    p.add_argument("--supernet", required=True, help="train-supernet checkpoint (last.pt) to split")
    p.add_argument("--split", required=True, help="cell:STAGE.CELL (one part per choice of that cell, counted "
                   "from 1) or count:CHOICE:K (K parts by how many cells take CHOICE, e.g. count:identity:2)")
    p.add_argument("--epochs", type=int, required=True, help="training epochs of each part (equal compute with "
                   "a one-shot supernet trained parts x epochs longer)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the supernet's)")
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--out", required=True, help="folder for part0/, part1/, ... and fewshot.yaml")
    add_cache_args(p)
    add_run_folder_args(p, "continue the parts trained in OUT")

    p = sub.add_parser("train", help="train a standalone model from scratch, or fine-tune exported weights")
    p.add_argument("--arch", required=True, help="architecture spec YAML")
    p.add_argument("--weights", help="start from these weights (model.safetensors or model.pt from export)")
    p.add_argument("--num-classes", type=int, help="a new, freshly initialised head for this many classes "
                   "(fine-tuning on another dataset)")
    p.add_argument("--recipe", help="a recipe file (recipes/deit.yaml, or recipe.yaml from psvit-nas tune): its "
                   "values replace the defaults of the options not given")
    add_train_args(p)

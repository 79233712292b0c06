"""`train-supernet` and `train`: the shared training loop on decoded, cached images."""
from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from ..samplers import SAMPLERS
from ..space import Arch, ArchSpec, SearchSpace, parse_budget
from .common import add_train_args, cache_config, check_numbers, command, loader_workers

def _train_config(args: argparse.Namespace, space: SearchSpace):
    from ..data import Augment
    from ..train import TrainConfig

    flops_range = None
    if getattr(args, "flops_range", None):
        flops_range = tuple(parse_budget(v, field_name="--flops-range") for v in args.flops_range)
    aug = Augment.preset(args.augment, space.image_size)
    for name in ("mixup", "cutmix", "label_smoothing", "random_erasing"):
        if getattr(args, name) is not None:
            setattr(aug, name, getattr(args, name))
    check_numbers(args, positive=("epochs", "batch_size", "lr"), share=("distill_weight", "random_erasing", "ema",
                                                                        "drop_path"),
                  at_least_0=("min_lr", "weight_decay", "warmup_epochs", "clip_grad", "save_every", "workers",
                              "checkpoint_every_steps", "mixup", "cutmix", "label_smoothing", "sandwich_k"))
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, min_lr=args.min_lr,
                       weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                       clip_grad=args.clip_grad or None, ema=args.ema, amp=args.amp, seed=args.seed,
                       workers=loader_workers(args), save_every=args.save_every,
                       checkpoint_every_steps=args.checkpoint_every_steps, compile=args.compile,
                       val_archs=getattr(args, "val_archs", 1), sampler=getattr(args, "sampler", "uniform"),
                       sandwich_k=getattr(args, "sandwich_k", 2),
                       distill_weight=getattr(args, "distill_weight", 0.5), flops_range=flops_range,
                       augment=aug.to_dict())


def _fit(args: argparse.Namespace, model, space: SearchSpace, arch: Arch | None, holdout: int | None) -> None:
    """Train with the shared loop; `holdout` training images are kept out for the search (None: 10 %, <= 10k)."""
    from ..io import run_folder
    from ..train import fit_on

    cfg = _train_config(args, space)
    with run_folder(args.out, args.resume, args.force):
        fit_on(model, space, args.data, cfg, args.out, arch=arch, holdout=holdout, data_dir=args.data_dir,
               cache=cache_config(args), resume=args.resume, command=" ".join(sys.argv))


@command("train-supernet")
def cmd_train_supernet(args: argparse.Namespace) -> None:
    import torch

    from ..supernet import Supernet

    space = SearchSpace.from_yaml(args.config)
    _train_config(args, space)  # bad options fail before the model is built
    torch.manual_seed(args.seed)
    model = Supernet(space, args.drop_path)
    model.set_grad_checkpointing(args.grad_checkpointing)
    _fit(args, model, space, None, args.search_holdout)


@command("train")
def cmd_train(args: argparse.Namespace) -> None:
    import torch

    from ..model import PSViT

    from ..train import load_weights

    spec = ArchSpec.from_yaml(args.arch)
    if args.recipe:
        _apply_recipe(args)
    _train_config(args, spec.space)  # bad options fail before the model is built
    if args.num_classes is not None and args.num_classes < 1:
        raise ConfigError(None, "--num-classes", f"expected a positive number, got {args.num_classes}")
    torch.manual_seed(args.seed)
    model = PSViT.from_spec(spec, args.drop_path)
    if args.weights:  # fine-tuning an exported model
        model.load_state_dict(load_weights(args.weights, spec).state_dict())
    if args.num_classes:
        model.reset_classifier(args.num_classes)
    model.set_grad_checkpointing(args.grad_checkpointing)
    _fit(args, model, model.space, spec.arch, 0)


def _apply_recipe(args: argparse.Namespace) -> None:
    """Take the recipe's values for every option left at its default (options given explicitly win)."""
    from ..tune import load_recipe

    defaults = argparse.ArgumentParser()
    add_train_args(defaults)
    default = vars(defaults.parse_args(["--out", "."]))
    for key, value in load_recipe(args.recipe).items():
        if getattr(args, key) == default[key]:
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
    p.add_argument("--sampler", choices=SAMPLERS, default="uniform",
                   help="paths per optimizer step: uniform (SPOS, one path), fair (FairNAS: every choice of every "
                   "cell once), sandwich (largest, smallest and --sandwich-k random paths, in-place distillation), "
                   "flops (one path near a MACs target drawn uniformly over the range)")
    p.add_argument("--sandwich-k", type=int, default=2, help="random paths per sandwich step")
    p.add_argument("--distill-weight", type=float, default=0.5, help="sandwich: the students' loss is this share "
                   "distillation from the largest path, the rest cross-entropy on the labels (1: BigNAS's pure "
                   "in-place distillation)")

    p = sub.add_parser("train", help="train a standalone model from scratch, or fine-tune exported weights")
    p.add_argument("--arch", required=True, help="architecture spec YAML")
    p.add_argument("--weights", help="start from these weights (model.safetensors or model.pt from export)")
    p.add_argument("--num-classes", type=int, help="a new, freshly initialised head for this many classes "
                   "(fine-tuning on another dataset)")
    p.add_argument("--recipe", help="recipe.yaml from psvit-nas tune: its values replace the defaults of the "
                   "options not given")
    add_train_args(p)

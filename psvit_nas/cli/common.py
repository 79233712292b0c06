"""What the command groups share: the command registry, argument groups, cache and worker settings."""
from __future__ import annotations

import argparse
import math
from typing import Callable

from ..errors import ConfigError
from ..space import parse_budget

COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {}


def command(name: str):
    def register(fn):
        COMMANDS[name] = fn
        return fn
    return register


def format_params(n: float) -> str:
    return f"{n / 1e6:.3f}M"


def cache_config(args: argparse.Namespace):
    """The decoded-image cache settings of a command's data arguments."""
    from ..data import CacheConfig

    limit = parse_budget(args.cache_limit, field_name="--cache-limit")
    return CacheConfig(args.cache, args.cache_dir, limit, loader_workers(args))


def loader_workers(args: argparse.Namespace) -> int:
    from ..data import default_workers

    return default_workers() if args.workers is None else args.workers


def add_cache_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None, help="data-loading processes for streamed data and "
                   "cache building (default: the CPUs per process, at most 8)")
    p.add_argument("--cache", choices=["auto", "on", "off"], default="auto", help="decoded-image cache (auto: "
                   "for splits under --cache-limit; off: decode every epoch)")
    p.add_argument("--cache-dir", default=None, help="where decoded images are cached (default: "
                   "$PSVIT_NAS_CACHE_DIR or ~/.cache/psvit-nas)")
    p.add_argument("--cache-limit", default="16G", help="largest decoded split cached under --cache auto, in "
                   "bytes (e.g. 16G)")


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="digits", help="digits | cifar10 | cifar100 | a Tiny-ImageNet or "
                   "ImageFolder root (default: digits)")
    p.add_argument("--data-dir", default="data", help="where cifar10/cifar100 live or are downloaded")
    add_cache_args(p)


def add_train_args(p: argparse.ArgumentParser) -> None:
    """The training loop's options, their defaults `TrainConfig`'s."""
    from ..data.augment import DEIT_RANDAUGMENT, PRESETS
    from ..train import TrainConfig

    d = TrainConfig()
    add_data_args(p)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (per --lr-batch images if given)")
    p.add_argument("--lr-batch", type=int, default=d.lr_batch, help="scale --lr linearly with the global batch: "
                   "lr x batch x processes / LR_BATCH (DeiT: 512; default: --lr as given)")
    p.add_argument("--min-lr", type=float, default=d.min_lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--clip-grad", type=float, default=d.clip_grad, help="max gradient norm (0: off)")
    p.add_argument("--ema", type=float, default=d.ema, help="EMA decay of the weights, e.g. 0.9998 (default off)")
    p.add_argument("--amp", choices=["auto", "on", "off"], default=d.amp, help="bf16 autocast (auto: on CUDA)")
    p.add_argument("--augment", default="auto", help=f"{' | '.join(PRESETS)} (auto: deit from 160 px, light from "
                   "32 px, else none)")
    p.add_argument("--mixup", type=float, help="mixup alpha (0: off), overriding the --augment preset")
    p.add_argument("--cutmix", type=float, help="cutmix alpha (0: off), overriding the preset")
    p.add_argument("--label-smoothing", type=float, help="overriding the preset")
    p.add_argument("--random-erasing", type=float, help="probability, overriding the preset")
    p.add_argument("--randaugment", help=f"timm's RandAugment config, e.g. {DEIT_RANDAUGMENT} (DeiT's), overriding "
                   "the preset ('': off)")
    p.add_argument("--repeated-aug", type=int, default=d.repeated_aug, help="DeiT's repeated augmentation: each "
                   "image this many times per epoch, each copy augmented on its own (DeiT: 3; default 1: off)")
    p.add_argument("--bn-batches", type=int, default=d.bn_batches, help="BatchNorm (Re-Attention paths): fixed "
                   "training batches that re-estimate its statistics before each validation, so that a reading "
                   "mid-schedule is not of stale statistics (0: keep the running ones)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--save-every", type=int, default=d.save_every, help="also keep epochN.pt every N epochs")
    p.add_argument("--checkpoint-every-steps", type=int, default=d.checkpoint_every_steps, help="also write "
                   "last.pt every N steps inside an epoch; --resume continues from that step (default 0: at epoch "
                   "ends only)")
    p.add_argument("--drop-path", type=float, default=0.0, help="stochastic depth of the last cell, rising "
                   "linearly from 0 over the cells as in DeiT (0.1 for DeiT-Tiny; default 0: off)")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute each cell's activations in the "
                   "backward pass: less memory, the same gradients")
    p.add_argument("--compile", action="store_true", help="torch.compile each cell (regional: a new path "
                   "reuses compiled cells)")
    p.add_argument("--print-config", action="store_true", help="print the resolved settings (recipe, presets and "
                   "options applied) as YAML and exit without training")
    add_run_folder_args(p, "continue from OUT/last.pt")


def check_numbers(args: argparse.Namespace, positive: tuple[str, ...] = (), at_least_0: tuple[str, ...] = (),
                  share: tuple[str, ...] = ()) -> None:
    """Numeric options that are finite and positive, >= 0, or a share in [0, 1] (those the command has and the
    user set): one line naming the option otherwise."""
    for names, ok, expected in ((positive, lambda v: v > 0, "a positive number"),
                                (at_least_0, lambda v: v >= 0, "0 or more"),
                                (share, lambda v: 0 <= v <= 1, "a share between 0 and 1")):
        for name in names:
            value = getattr(args, name, None)
            if value is not None and not (math.isfinite(value) and ok(value)):
                raise ConfigError(None, f"--{name.replace('_', '-')}", f"expected {expected}, got {value}")


def add_run_folder_args(p: argparse.ArgumentParser, resume_help: str | None) -> None:
    """--resume (unless `resume_help` is None: a command with nothing to continue) and --force."""
    if resume_help is not None:
        p.add_argument("--resume", action="store_true", help=resume_help)
    p.add_argument("--force", action="store_true", help="start over in an OUT that holds a run (the old one is "
                   "moved aside to OUT.old-<time>, never deleted)")


def add_bn_batches_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bn-batches", type=int, default=10, help="training batches for Re-Attention's BatchNorm "
                   "recalibration of each inherited path (0: keep the supernet's running statistics)")

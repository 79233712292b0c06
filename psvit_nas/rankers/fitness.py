"""Candidate fitness: top-1 of a path with inherited weights on fixed held-out TRAINING images.

The images are the supernet run's held-out part of the training set (`--search-holdout`
at training time), never the validation set accuracy is reported on. Paths with
BatchNorm (Re-Attention) are recalibrated on fixed training batches first. Every
candidate sees the same images in the same order.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch.utils.data import Subset

from ..data import CacheConfig, EvalBatches, holdout_split, load_images
from ..errors import ConfigError
from ..evaluate import evaluate, has_batchnorm, recalibrate_bn
from ..model import PSViT
from ..space import Arch, SearchSpace
from ..supernet import Supernet

Batches = EvalBatches


@dataclass(frozen=True)
class FitnessSet:
    """Which images score candidates; recorded in best.yaml so that `eval --split search` can rebuild them."""

    data: str
    data_dir: str
    holdout: int
    size: int
    bn_batches: int
    batch_size: int = 128

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load(self, space: SearchSpace, cache: CacheConfig | None = None) -> tuple[Batches, Batches]:
        """(fitness batches from the held-out images, BatchNorm calibration batches from the rest), kept in
        memory as uint8 and read through the decoded-image cache."""
        cache = cache or CacheConfig()
        train = load_images(self.data, "train", space, self.data_dir, cache)
        keep, held = holdout_split(len(train), self.holdout)
        order = torch.randperm(len(keep), generator=torch.Generator().manual_seed(1)).tolist()
        calib = [keep[i] for i in order[: self.bn_batches * self.batch_size]]
        return tuple(EvalBatches(Subset(train, part), space.image_size, self.batch_size, workers=cache.workers,
                                 keep=True) for part in (held[: self.size], calib))


def fitness_set_for(checkpoint: dict[str, Any], source: str, data: str | None, data_dir: str | None,
                    size: int | None, bn_batches: int) -> FitnessSet:
    """The fitness set of a supernet checkpoint: its held-out training images (or the first `size`)."""
    run = checkpoint.get("run", {})
    holdout = int(run.get("search_holdout", 0))
    if holdout <= 0:
        raise ConfigError(source, "search_holdout", "this supernet was trained on all its training images, so "
                          "none are left to score candidates; retrain with --search-holdout N")
    size = holdout if size is None else size
    if bn_batches < 0:
        raise ConfigError(None, "--bn-batches", f"expected 0 (keep the supernet's statistics) or more, got "
                          f"{bn_batches}")
    if not 0 < size <= holdout:
        raise ConfigError(None, "--search-val-size", f"expected 1..{holdout} (the supernet's held-out images), "
                          f"got {size}")
    return FitnessSet(data or run.get("data", "digits"), data_dir or run.get("data_dir", "data"), holdout, size,
                      bn_batches)


def inherited_model(supernet: Supernet, arch: Arch, calib: Callable[[], Batches], device: str = "cpu") -> PSViT:
    """`arch` with its inherited weights; BatchNorm, where the path has it, recalibrated on `calib()` (if
    that holds any batches; otherwise the supernet's running statistics stay)."""
    model = supernet.export(arch).to(device)
    if has_batchnorm(model) and len(batches := calib()):
        recalibrate_bn(model, batches, device)
    return model.eval()


class Evaluator:
    """Scores archs of one supernet on fixed batches. The supernet itself is never modified."""

    def __init__(self, supernet: Supernet, batches: Batches, calib: Batches, device: str = "cpu") -> None:
        self.supernet = supernet.to(device).eval()
        self.batches, self.calib, self.device = batches, calib, device

    def model(self, arch: Arch) -> PSViT:
        """The standalone model of `arch` as scored."""
        return inherited_model(self.supernet, arch, lambda: self.calib, self.device)

    def metrics(self, arch: Arch) -> dict[str, float]:
        """Top-1, top-5 and loss of `arch` on the fitness batches."""
        return evaluate(self.model(arch), self.batches, device=self.device)

    def __call__(self, arch: Arch) -> float:
        return self.metrics(arch)["top1"]

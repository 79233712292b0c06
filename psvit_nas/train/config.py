"""The training loop's settings, with their defaults (the command line's defaults come from here)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64              # per process
    lr: float = 1e-3
    lr_batch: int | None = None       # lr is per this many images of global batch (DeiT: 512); None: as given
    min_lr: float = 1e-5             # the cosine's floor; never above the peak learning rate
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0       # at most half the schedule, so that a short one still anneals
    clip_grad: float | None = 5.0
    ema: float | None = None
    amp: str = "auto"                 # auto: bf16 autocast on CUDA only
    seed: int = 0
    workers: int = 0
    save_every: int = 0
    checkpoint_every_steps: int = 0
    compile: bool = False
    repeated_aug: int = 1             # DeiT's repeated augmentation: each image this many times per epoch
    val_archs: int = 3
    bn_batches: int = 10              # BatchNorm (Re-Attention): fixed training batches that re-estimate its
                                      # statistics before each validation (0: the running statistics)
    sampler: str = "uniform"
    sandwich_k: int = 2
    distill_weight: float = 0.5       # sandwich students: this share of the loss on the largest path, the rest labels
    flops_range: tuple[float, float] | None = None
    part: str | None = None           # "SPLIT/K": train only paths of part K of a few-shot split
    augment: dict[str, Any] = field(default_factory=dict)

    def scaled_lr(self, world: int = 1) -> float:
        """The learning rate at this run's global batch (DeiT's linear scaling rule when `lr_batch` is set)."""
        return self.lr * self.batch_size * world / self.lr_batch if self.lr_batch else self.lr

"""Scoring a model or a supernet path: top-1, top-5, loss, images per second; BatchNorm recalibration."""
from __future__ import annotations

import time
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .space import Arch


def forward(model: nn.Module, x: Tensor, arch: Arch | None) -> Tensor:
    """Run a standalone model (arch None) or one path of a supernet."""
    return model(x) if arch is None else model(x, arch)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], arch: Arch | None = None,
             device: torch.device | str = "cpu", amp: bool = False) -> dict[str, float]:
    """Top-1 / top-5 accuracy (%), mean loss and images/s over `batches`, in eval mode."""
    was_training = model.training
    model.eval()
    correct1 = correct5 = seen = 0
    loss_sum = 0.0
    start = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
            logits = forward(model, x, arch).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(dim=1).sum().item()
        seen += len(y)
    elapsed = time.perf_counter() - start
    model.train(was_training)
    if seen == 0:
        raise ValueError("no images to evaluate")
    return {"top1": 100.0 * correct1 / seen, "top5": 100.0 * correct5 / seen, "loss": loss_sum / seen,
            "images": seen, "images_per_s": seen / elapsed}


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
                   device: torch.device | str = "cpu") -> None:
    """Re-estimate BatchNorm running statistics (cumulative average) on fixed training batches.

    Meant for a standalone (exported) model, so that a supernet shared by several
    evaluations is never modified. Only the BatchNorm layers run in training mode (drop path
    and dropout stay off). Leaves the model in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the calibration batches
        m.train()
    for x, _ in batches:
        model(x.to(device))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()

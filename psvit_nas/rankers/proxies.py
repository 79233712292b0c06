"""Training-free proxies: score a network at initialisation from one fixed batch, without training it.

Each proxy takes a model and a batch and returns one number, higher meaning "ranked better". The model is
never changed (the proxies that need to alter weights work on a copy). Deterministic given the model's
initial weights and the batch.

- synflow (Tanaka et al. 2020): sum |theta * dR/dtheta| with R the sum of the outputs of the network with
  |theta| on an all-ones input (no data, no labels).
- grad_norm (Abdelfattah et al. 2021): sum over parameter tensors of the L2 norm of the cross-entropy gradient.
- snip (Lee et al. 2019): sum |theta * dL/dtheta| for the cross-entropy loss L.
- naswot (Mellor et al. 2021): log-determinant of the kernel of the batch's binary GELU activation patterns,
  K_ij = units - hamming(c_i, c_j); 0 for a network without GELU units.
- dss (TF-TAS, Zhou et al. 2022): synaptic diversity of the attention projections,
  sum ||W||_nuc * ||dR/dW||_nuc, plus synaptic saliency of the MLP weights, sum |W * dR/dW|, with the synflow
  objective R.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model import PSViT
from ..space import Arch, SearchSpace

Proxy = Callable[[nn.Module, Tensor, Tensor], float]


def _weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _loss_grads(model: nn.Module, x: Tensor, y: Tensor) -> list[tuple[Tensor, Tensor]]:
    """(weight, d cross-entropy / d weight) of a copy of the model in eval mode."""
    model = copy.deepcopy(model).eval()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return [(p.detach(), p.grad) for _, p in _weights(model) if p.grad is not None]


def _synflow_grads(model: nn.Module, x: Tensor) -> list[tuple[str, Tensor, Tensor]]:
    """(name, |weight|, dR/dweight) for the synflow objective R: |theta|, all-ones input, float64."""
    model = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for _, p in _weights(model):
            p.abs_()
    model.zero_grad(set_to_none=True)
    model(torch.ones_like(x[:1], dtype=torch.float64)).sum().backward()
    return [(n, p.detach(), p.grad) for n, p in _weights(model) if p.grad is not None]


def synflow(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return float(sum((p * g).abs().sum() for _, p, g in _synflow_grads(model, x)))


def grad_norm(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return float(sum(g.norm() for _, g in _loss_grads(model, x, y)))


def snip(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return float(sum((p * g).abs().sum() for p, g in _loss_grads(model, x, y)))


def naswot(model: nn.Module, x: Tensor, y: Tensor) -> float:
    codes: list[Tensor] = []

    def keep(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        codes.append((inputs[0] > 0).flatten(1).double())

    hooks = [m.register_forward_pre_hook(keep) for m in model.modules() if isinstance(m, nn.GELU)]
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()(x)
            model.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    if not codes:
        return 0.0
    c = torch.cat(codes, dim=1)
    kernel = c @ c.T + (1 - c) @ (1 - c).T
    return float(torch.linalg.slogdet(kernel).logabsdet)


def dss(model: nn.Module, x: Tensor, y: Tensor) -> float:
    score = 0.0
    for name, p, g in _synflow_grads(model, x):
        if p.dim() != 2:
            continue
        if ".attn." in f".{name}":
            score += float(torch.linalg.matrix_norm(p, "nuc") * torch.linalg.matrix_norm(g, "nuc"))
        elif ".mlp." in f".{name}":
            score += float((p * g).abs().sum())
    return score


PROXIES: dict[str, Proxy] = {"synflow": synflow, "naswot": naswot, "grad_norm": grad_norm, "snip": snip,
                             "dss": dss}


class ProxyRanker:
    """A training-free proxy of each architecture, initialised with one seed, on one fixed batch."""

    def __init__(self, space: SearchSpace, proxy: str, batch: tuple[torch.Tensor, torch.Tensor],
                 seed: int = 0) -> None:
        self.space, self.proxy, self.batch, self.seed = space, PROXIES[proxy], batch, seed

    def __call__(self, arch: Arch) -> float:
        torch.manual_seed(self.seed)
        return self.proxy(PSViT.from_spec(self.space.spec(arch)), *self.batch)

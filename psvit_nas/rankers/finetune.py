"""Fine-tuning from inherited weights: a few SGD steps on a copy of a path (the supernet never changes), scored
by minus the summed training loss (held-out top-1 after is recorded too)."""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from ..evaluate import evaluate
from ..space import Arch
from .fitness import Batches, Evaluator


FINETUNE_STEPS = 20


class FinetuneRanker:
    """`steps` SGD steps from a path's inherited weights on fixed training batches, then held-out top-1."""

    def __init__(self, evaluator: Evaluator, train: Batches, steps: int = FINETUNE_STEPS, lr: float = 0.01,
                 seed: int = 0) -> None:
        self.evaluator, self.train, self.steps, self.lr, self.seed = evaluator, train, steps, lr, seed

    def metrics(self, arch: Arch) -> dict[str, float]:
        """{"loss": summed training loss over the steps, "top1": held-out top-1 after them}."""
        model = self.evaluator.model(arch).train()  # a new module: the supernet's weights are copied, not shared
        optimizer = torch.optim.SGD(model.parameters(), lr=self.lr, momentum=0.9)
        torch.manual_seed(self.seed)
        total = 0.0
        for x, y in itertools.islice(itertools.cycle(self.train), self.steps):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        return {"loss": total, "top1": evaluate(model.eval(), self.evaluator.batches)["top1"]}

    def __call__(self, arch: Arch) -> float:
        return -self.metrics(arch)["loss"]

"""Rankers: what scores a search's candidates, higher meaning better.

- `supernet`: top-1 with inherited weights on the fitness images (`fitness.Evaluator`).
- a training-free proxy (`proxies.PROXIES`) of the architecture at a seeded initialisation, on one fitness batch.
- `finetune`: a few SGD steps from the inherited weights on training batches, on a copy of the path (the
  supernet never changes), scored by minus the summed training loss (held-out top-1 after is recorded too).
- `calibrated`: a ridge regression from cheap features (supernet fitness, MACs, params, the count of each
  choice per stage) to retrained accuracy, fitted on a study's records.
"""
from __future__ import annotations

import itertools
import json
import re
import statistics
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..evaluate import evaluate
from ..model import PSViT
from ..space import Arch, SearchSpace
from .fitness import Batches, Evaluator
from .proxies import PROXIES

RANKERS = ("supernet", *PROXIES, "finetune", "calibrated")
FINETUNE_STEPS = 20


class ProxyRanker:
    """A training-free proxy of each architecture, initialised with one seed, on one fixed batch."""

    def __init__(self, space: SearchSpace, proxy: str, batch: tuple[torch.Tensor, torch.Tensor],
                 seed: int = 0) -> None:
        self.space, self.proxy, self.batch, self.seed = space, PROXIES[proxy], batch, seed

    def __call__(self, arch: Arch) -> float:
        torch.manual_seed(self.seed)
        return self.proxy(PSViT.from_spec(self.space.spec(arch)), *self.batch)


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


def features(space: SearchSpace, arch: Arch, fitness: float) -> list[float]:
    """The calibrated ranker's inputs: supernet fitness, MACs (M), params (M), each choice's count per stage."""
    cost = space.cost_table(arch)
    counts = [cells.count(choice) for cells, stage in zip(arch.stages, space.stages) for choice in stage.choices]
    return [fitness, cost.macs / 1e6, cost.params / 1e6, *counts]


class Ridge:
    """Ridge regression on standardised features (closed form). A study has about 20 architectures for 18
    features: `alpha` 10 shrinks hard enough that no single choice count carries the fit."""

    def __init__(self, x: Sequence[Sequence[float]], y: Sequence[float], alpha: float = 10.0) -> None:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self.mean, self.scale = x.mean(0), x.std(0) + 1e-12
        z = (x - self.mean) / self.scale
        self.bias = y.mean()
        self.coef = np.linalg.solve(z.T @ z + alpha * np.eye(z.shape[1]), z.T @ (y - self.bias))

    def __call__(self, x: Sequence[float]) -> float:
        return float((np.asarray(x, dtype=float) - self.mean) / self.scale @ self.coef + self.bias)


def leave_one_out(x: Sequence[Sequence[float]], y: Sequence[float], alpha: float = 10.0) -> list[float]:
    """Each row's prediction by a ridge fitted on every other row: it never scores what it was fitted on."""
    return [Ridge([r for j, r in enumerate(x) if j != i], [v for j, v in enumerate(y) if j != i], alpha)(x[i])
            for i in range(len(x))]


def retrained(folder: str | Path, space: SearchSpace) -> dict[str, float]:
    """Mean retrained top-1 per architecture of a study's records (its main schedule: no `-eN` probes)."""
    folder = Path(folder)
    paths = [p for p in sorted(folder.glob("retrain-*.json")) if re.fullmatch(r"retrain-.+-seed\d+\.json", p.name)]
    accs: dict[str, list[float]] = {}
    for path in paths:
        record = json.loads(path.read_text())
        arch = space.validate(Arch.parse(record["arch"]), source=f"{path} (records of another search space?)")
        accs.setdefault(str(arch), []).append(float(record["val_top1"]))
    if len(accs) < 5:
        raise ConfigError(str(folder), "records", f"the calibrated ranker needs retrained records of at least 5 "
                          f"architectures; found {len(accs)}")
    return {arch: statistics.fmean(v) for arch, v in accs.items()}


class CalibratedRanker:
    """Predicted retrained top-1 from `features`, fitted on the architectures of a study's records."""

    def __init__(self, evaluator: Evaluator, space: SearchSpace, truth: dict[str, float]) -> None:
        self.evaluator, self.space = evaluator, space
        archs = [Arch.parse(a) for a in truth]
        self.model = Ridge([self._features(a) for a in archs], list(truth.values()))

    def _features(self, arch: Arch) -> list[float]:
        return features(self.space, arch, self.evaluator(arch))

    def __call__(self, arch: Arch) -> float:
        return self.model(self._features(arch))


def make_ranker(name: str, evaluator: Evaluator, train: Callable[[], Batches], records: str | None = None,
                steps: int = FINETUNE_STEPS) -> Callable[[Arch], float]:
    """The ranker called `name` over one supernet's evaluator; `train()` gives its training batches."""
    space = evaluator.supernet.space
    if name not in RANKERS:
        raise ConfigError(None, "--fitness", f"unknown ranker {name!r}; expected one of {list(RANKERS)}")
    if name == "calibrated":
        if not records:
            raise ConfigError(None, "--records", "--fitness calibrated needs a study's records folder to fit on "
                              "(--records STUDY/records)")
        return CalibratedRanker(evaluator, space, retrained(records, space))
    if records:
        raise ConfigError(None, "--records", f"only --fitness calibrated reads records, not {name}")
    if name == "supernet":
        return evaluator
    if name == "finetune":
        batches = train()
        if not len(batches):
            raise ConfigError(None, "--bn-batches", "--fitness finetune trains on the calibration batches; "
                              "give --bn-batches 1 or more")
        if steps < 1:
            raise ConfigError(None, "--finetune-steps", f"expected 1 or more, got {steps}")
        return FinetuneRanker(evaluator, batches, steps)
    return ProxyRanker(space, name, next(iter(evaluator.batches)))

"""The calibrated ranker: a ridge regression from cheap features (supernet fitness, MACs, params, the count of
each choice per stage) to retrained accuracy, fitted on a study's records and judged by leave-one-out."""
from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from ..space import Arch, SearchSpace
from .fitness import Evaluator


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


def predicted_by_the_others(space: SearchSpace, archs: Sequence[str], fitness: Sequence[float],
                            truth: Sequence[float]) -> list[float]:
    """Each architecture's `truth` as a ridge on `features` fitted on every other one predicts it (leave-one-out);
    empty under 5 architectures, too few to fit."""
    if len(archs) < 5:
        return []
    return leave_one_out([features(space, Arch.parse(a), f) for a, f in zip(archs, fitness)], truth)


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

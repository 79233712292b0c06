"""The size-debiased ranker: supernet fitness less the supernet's own trend with MACs.

A uniform supernet trained long comes to rank by size: in the settled study its fitness follows MACs at
τ 0.48 after 120 epochs' worth of images, while retrained accuracy does not (τ −0.11), and its ranking of the
retrained truth decays from τ 0.44 at 20 epochs to 0.09. The trend needs no ground truth to measure: the
supernet's fitness of uniformly sampled reference paths, regressed on log MACs. A candidate scores its fitness
less that trend, read at the reference paths' mean size, so the score stays in top-1 points: the fitness it
would have at the average size (`docs/results.md`, "How long to train the supernet").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..samplers import PathSampler
from ..space import Arch, SearchSpace

REFERENCE_PATHS = 24


def reference_paths(space: SearchSpace, n: int = REFERENCE_PATHS, seed: int = 0) -> list[Arch]:
    """`n` uniformly sampled paths of the whole space (the same for a given seed)."""
    sampler = PathSampler(space, seed + 104_729)
    return [sampler.path(i) for i in range(n)]


@dataclass(frozen=True)
class SizeTrend:
    """Fitness against log MACs, a least-squares line: `slope` points per e-fold of MACs around `center`."""

    slope: float
    center: float

    @classmethod
    def fit(cls, macs: Sequence[float], fitness: Sequence[float]) -> "SizeTrend":
        x = np.log(np.asarray(macs, float))
        if len(x) < 3 or np.ptp(x) == 0:
            return cls(0.0, float(x.mean()) if len(x) else 0.0)
        return cls(float(np.polyfit(x, np.asarray(fitness, float), 1)[0]), float(x.mean()))

    def __call__(self, macs: float, fitness: float) -> float:
        """`fitness` with the trend taken out: what it would read at the reference's mean size."""
        return fitness - self.slope * (math.log(macs) - self.center)

    def undo(self, macs: float, debiased: float) -> float:
        """The fitness a debiased score came from."""
        return debiased + self.slope * (math.log(macs) - self.center)


def size_trend(space: SearchSpace, archs: Sequence[Arch], fitness: Sequence[float]) -> SizeTrend:
    """The trend of `fitness` (one per arch, e.g. the supernet's on `reference_paths`) with the archs' MACs."""
    return SizeTrend.fit([space.cost_table.macs(a) for a in archs], fitness)

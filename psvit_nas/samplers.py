"""Path samplers: which supernet paths each optimizer step trains.

`sampler(step)` returns the paths of one optimizer step, each forwarded on the step's batch;
their gradients are accumulated and the weights updated once. Every sampler is a pure
function of (seed, step), so every DDP rank trains the same paths and a resumed run the
same paths as an uninterrupted one.

- `uniform` (SPOS): one uniformly drawn path.
- `fair` (FairNAS, strict fairness): m paths in which every cell takes each of its m
  choices exactly once (an independent random permutation per cell).
- `sandwich` (BigNAS, AttentiveNAS): the largest path, the smallest path and k random ones;
  `distill` is set, so the loop makes the largest path's detached soft predictions the
  targets of the others (in-place distillation), mixed with the labels by `distill_weight`.
- `flops` (AttentiveNAS's FLOPs prior): a MACs target drawn uniformly over the range, then a
  uniform path within 5 % of the range's width of it, so small and large paths train as often as median ones
  (uniform choices put almost every path near the median MACs).

A `Split` partitions the space for few-shot NAS: the uniform sampler restricted to one part
(`part="SPLIT/K"`) trains a sub-supernet on its own paths.
"""
from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass
from typing import Callable, Sequence

from .errors import ConfigError
from .limits import budget, fits
from .space import Arch, SearchSpace, format_macs

SAMPLERS = ("uniform", "fair", "sandwich", "flops")


@dataclass(frozen=True)
class Split:
    """A partition of the space into parts, for few-shot sub-supernets: by the choice of one cell
    (`cell:S.I`, stage S and cell I counted from 1: one part per choice), or by how many cells take one
    choice (`count:CHOICE:K`: K parts of about equal mass under uniform sampling)."""

    text: str
    edges: tuple[int, ...] = ()      # count: a path with c such cells is in part bisect_right(edges, c)

    @classmethod
    def parse(cls, text: str, space: SearchSpace, field: str = "--split") -> "Split":
        kind, _, rest = text.partition(":")
        try:
            if kind == "cell":
                stage, cell = (int(v) - 1 for v in rest.split("."))
                if not (0 <= stage < len(space.stages) and 0 <= cell < space.stages[stage].cells):
                    raise ValueError
                return cls(text)
            if kind == "count":
                choice, k = rest.split(":")
                if choice not in {c for s in space.stages for c in s.choices} or int(k) < 2:
                    raise ValueError
                return cls(text, _count_edges(space, choice, int(k)))
        except ValueError:
            pass
        raise ConfigError(None, field, f"expected cell:STAGE.CELL (from 1) or count:CHOICE:K (K >= 2) of space "
                          f"{space.name!r}, got {text!r}")

    def parts(self, space: SearchSpace) -> int:
        if self.text.startswith("cell:"):
            stage = int(self.text[5:].split(".")[0]) - 1
            return len(space.stages[stage].choices)
        return len(self.edges) + 1

    def part(self, space: SearchSpace, arch: Arch) -> int:
        """The part `arch` belongs to (and whose sub-supernet scores it)."""
        kind, _, rest = self.text.partition(":")
        if kind == "cell":
            stage, cell = (int(v) - 1 for v in rest.split("."))
            return space.stages[stage].choices.index(arch.stages[stage][cell])
        choice = rest.split(":")[0]
        return bisect.bisect_right(self.edges, sum(cells.count(choice) for cells in arch.stages))


def _count_edges(space: SearchSpace, choice: str, k: int) -> tuple[int, ...]:
    """Bin edges of the number of `choice` cells closest to the uniform distribution's 1/k quantiles (2,000
    seeded draws); a path with fewer than edges[0] such cells is in part 0. No part is empty."""
    rng = random.Random(0)
    counts = sorted(sum(cells.count(choice) for cells in space.sample(rng).stages) for _ in range(2000))
    below = {e: bisect.bisect_left(counts, e) / len(counts) for e in range(counts[0] + 1, counts[-1] + 1)}
    return tuple(sorted({min(below, key=lambda e: abs(below[e] - i / k)) for i in range(1, k)}))


class PathSampler:
    """Uniform SPOS paths, optionally restricted to a MACs range and to the paths `keep` accepts, by
    rejection; the base of every sampler."""

    distill = False

    def __init__(self, space: SearchSpace, seed: int, flops_range: Sequence[float] | None = None,
                 tries: int = 1000, keep: Callable[[Arch], bool] | None = None) -> None:
        self.space, self.seed, self.tries, self.keep = space, seed, tries, keep
        self.low, self.high = flops_range if flops_range else (None, None)
        self.limits = budget(space, self.high, self.low, options=("--flops-range", "--flops-range"))

    def rng(self, step: int) -> random.Random:
        return random.Random(self.seed * 1_000_003 + step)

    def path(self, step: int) -> Arch:
        """One uniformly drawn path inside the range (the SPOS path of `step`)."""
        rng = self.rng(step)
        for _ in range(self.tries):
            arch = self.space.sample(rng)
            if fits(self.limits, arch) and (self.keep is None or self.keep(arch)):
                return arch
        raise ConfigError(None, "--flops-range", f"no path between {format_macs(self.low)} and "
                          f"{format_macs(self.high)} MACs (in its part) in {self.tries} uniform draws; widen "
                          "the range")

    def __call__(self, step: int) -> list[Arch]:
        return [self.path(step)]


class FairSampler(PathSampler):
    """FairNAS strict fairness: m paths per step, every choice of every cell exactly once."""

    def __call__(self, step: int) -> list[Arch]:
        rng = self.rng(step)
        m = max(len(s.choices) for s in self.space.stages)
        for _ in range(self.tries):
            columns = [[self._column(rng, stage.choices, m) for _ in range(stage.cells)]
                       for stage in self.space.stages]
            paths = [Arch(tuple(tuple(col[j] for col in stage) for stage in columns)) for j in range(m)]
            if all(fits(self.limits, p) for p in paths):
                return paths
        raise ConfigError(None, "--flops-range", f"no fair set of paths between {format_macs(self.low)} and "
                          f"{format_macs(self.high)} MACs in {self.tries} draws; widen the range or use "
                          "--sampler uniform")

    @staticmethod
    def _column(rng: random.Random, choices: Sequence[str], m: int) -> list[str]:
        """A random order of a cell's choices; a stage with fewer than m choices repeats random ones."""
        column = list(choices) + [rng.choice(choices) for _ in range(m - len(choices))]
        rng.shuffle(column)
        return column


class SandwichSampler(PathSampler):
    """The sandwich rule: largest, smallest and `k` uniform paths; the largest teaches the others."""

    distill = True

    def __init__(self, space: SearchSpace, seed: int, flops_range: Sequence[float] | None = None, k: int = 2,
                 tries: int = 1000) -> None:
        super().__init__(space, seed, flops_range, tries)
        self.k = k
        self.smallest, self.largest = extreme_archs(space, self.low, self.high)

    def __call__(self, step: int) -> list[Arch]:
        return [self.largest, self.smallest] + [self.path(step * (self.k + 1) + i) for i in range(self.k)]


class FlopsSampler(PathSampler):
    """One path a step, drawn near a MACs target that is uniform over the range."""

    def __init__(self, space: SearchSpace, seed: int, flops_range: Sequence[float] | None = None,
                 band: float = 0.05, tries: int = 1000) -> None:
        super().__init__(space, seed, flops_range, tries)
        low, high = space.cost_table.macs_range
        self.lo, self.hi, self.band = max(low, self.low or low), min(high, self.high or high), band

    def path(self, step: int) -> Arch:
        rng = self.rng(step)
        target, width = rng.uniform(self.lo, self.hi), self.band * (self.hi - self.lo)
        try:
            near = budget(self.space, min(self.hi, target + width), max(self.lo, target - width))
            return self.space.sample(rng, near)
        except ConfigError:  # no path this close to the target (a narrow range of coarse cells): any in the range
            return super().path(step)


def make_sampler(name: str, space: SearchSpace, seed: int, flops_range: Sequence[float] | None = None,
                 k: int = 2, part: str | None = None) -> PathSampler:
    """The sampler called `name` (one of SAMPLERS); `part` ("SPLIT/K") keeps it to part K of a `Split`."""
    if part:
        if name != "uniform":
            raise ConfigError(None, "--sampler", f"a few-shot part trains with the uniform sampler, not {name!r}")
        return PathSampler(space, seed, flops_range, keep=part_filter(space, part))
    if name == "uniform":
        return PathSampler(space, seed, flops_range)
    if name == "fair":
        return FairSampler(space, seed, flops_range)
    if name == "sandwich":
        return SandwichSampler(space, seed, flops_range, k)
    if name == "flops":
        return FlopsSampler(space, seed, flops_range)
    raise ConfigError(None, "--sampler", f"expected one of {', '.join(SAMPLERS)}; got {name!r}")


def part_filter(space: SearchSpace, part: str) -> Callable[[Arch], bool]:
    """Whether a path is in part K of a split, for `part` = "SPLIT/K"."""
    text, _, k = part.rpartition("/")
    split = Split.parse(text, space)
    return lambda arch: split.part(space, arch) == int(k)


def extreme_archs(space: SearchSpace, low: float | None = None, high: float | None = None) -> tuple[Arch, Arch]:
    """(the smallest path with at least `low` MACs, the largest with at most `high`), exactly.

    A cell's MACs depend only on its stage and choice, so an arch's MACs are fixed by how many
    cells of each stage take each choice: the stages' count vectors are enumerated and the
    last stage is matched against the sorted sums of the others (meet in the middle).
    """
    table = space.cost_table
    options = []  # per stage: {stage MACs: cells}
    for s, stage in enumerate(space.stages):
        by_macs: dict[int, tuple[str, ...]] = {}
        for cells in itertools.combinations_with_replacement(stage.choices, stage.cells):
            by_macs.setdefault(sum(table.cell_macs[s][c] for c in cells), cells)
        options.append(by_macs)
    fixed = table.macs(Arch(tuple(() for _ in space.stages)))
    heads: dict[int, tuple[tuple[str, ...], ...]] = {fixed: ()}
    for by_macs in options[:-1]:
        heads = {m + n: cells + (c,) for m, cells in heads.items() for n, c in by_macs.items()}
    sums = sorted(heads)
    best_low = best_high = None
    for n, last in options[-1].items():
        i = bisect.bisect_right(sums, (high if high is not None else float("inf")) - n) - 1
        if i >= 0 and (best_high is None or sums[i] + n > best_high[0]):
            best_high = (sums[i] + n, heads[sums[i]] + (last,))
        j = bisect.bisect_left(sums, (low if low is not None else float("-inf")) - n)
        if j < len(sums) and (best_low is None or sums[j] + n < best_low[0]):
            best_low = (sums[j] + n, heads[sums[j]] + (last,))
    if best_low is None or best_high is None or best_low[0] > best_high[0]:
        raise ConfigError(None, "--flops-range", f"no path between {format_macs(low or 0)} and "
                          f"{format_macs(high or float('inf'))} MACs")
    return Arch(best_low[1]), Arch(best_high[1])

"""Budgets: bounds on an additive cost of an architecture (MACs, predicted latency).

A `Limit` is a cost table (fixed parts plus one entry per cell choice) with optional bounds. A budget is a tuple
of limits, built and checked against its space once (`budget`), then tested per architecture (`fits`) by every
sampler and search.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from .errors import ConfigError

if TYPE_CHECKING:
    from .space import Arch, SearchSpace


def format_macs(macs: float) -> str:
    """1.254e9 -> '1.254G'."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if macs >= scale:
            return f"{macs / scale:.4g}{unit}"
    return f"{macs:.0f}"


@dataclass(frozen=True)
class Limit:
    """Bounds on an additive cost: fixed parts plus one table entry per cell."""

    name: str                                  # what is limited, for messages: "MACs", "latency"
    option: str                                # the option that set the upper bound, e.g. --latency
    cells: tuple[Mapping[str, float], ...]     # per stage: choice -> cost of one cell
    fixed: float
    high: float | None = None
    low: float | None = None
    fmt: Callable[[float], str] = format_macs
    low_option: str | None = None              # the option that set the lower bound (default: `option`)

    def value(self, arch: Arch) -> float:
        return self.fixed + sum(table[c] for table, stage in zip(self.cells, arch.stages) for c in stage)

    def ok(self, arch: Arch) -> bool:
        value = self.value(arch)
        return (self.high is None or value <= self.high) and (self.low is None or value >= self.low)

    def extremes(self, space: SearchSpace) -> tuple[float, float]:
        """The smallest and largest cost of any architecture of `space`."""
        return tuple(self.fixed + sum(pick(t.values()) * st.cells for t, st in zip(self.cells, space.stages))
                     for pick in (min, max))

    def check(self, space: SearchSpace, source: str | None = None) -> None:
        """Raise ConfigError, naming the option, when no architecture of `space` is within the bounds."""
        least, most = self.extremes(space)
        low_option = self.low_option or self.option
        if self.high is not None and self.high < least:
            raise ConfigError(source, self.option, f"budget {self._show(self.high)} is below the smallest "
                              f"architecture of space {space.name!r} ({self._show(least)})")
        if self.low is not None and self.low > most:
            raise ConfigError(source, low_option, f"minimum {self._show(self.low)} is above the largest "
                              f"architecture of space {space.name!r} ({self._show(most)})")
        if self.high is not None and self.low is not None and self.low > self.high:
            raise ConfigError(source, low_option, f"minimum {self._show(self.low)} is above the budget "
                              f"{self._show(self.high)}")

    def _show(self, value: float) -> str:
        return f"{self.fmt(value)} {self.name}"

    def __str__(self) -> str:
        return f"{self.name} {self.fmt(self.low or 0)} to {'inf' if self.high is None else self.fmt(self.high)}"


Budget = tuple[Limit, ...]


def budget(space: SearchSpace, max_macs: float | None = None, min_macs: float | None = None,
           *others: Limit, source: str | None = None,
           options: tuple[str, str] = ("--flops", "--min-flops")) -> Budget:
    """The limits a search or sampler keeps to: the MACs bounds that are given, then `others` (a latency
    limit); each checked against `space` once, here."""
    limits = list(others)
    if max_macs is not None or min_macs is not None:
        limits.insert(0, replace(space.cost_table.macs_limit, high=max_macs, low=min_macs, option=options[0],
                                 low_option=options[1]))
    for limit in limits:
        limit.check(space, source)
    return tuple(limits)


def fits(limits: Sequence[Limit], arch: Arch) -> bool:
    """Whether `arch` is within every limit."""
    return all(limit.ok(arch) for limit in limits)


__all__ = ["Budget", "Limit", "budget", "fits", "format_macs"]

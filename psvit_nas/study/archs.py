"""Which architectures the study retrains: spread over the space's MACs range, a window around one budget,
and named extras such as a hand-designed baseline."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from .. import limits
from ..errors import ConfigError
from ..space import Arch, ArchSpec, SearchSpace

WINDOW = 0.1  # the window is the budget +- 10 %


@dataclass(frozen=True)
class StudyArch:
    """One architecture of the study: its name in records (`spread3`, `window0`, `layers`) and its group."""

    name: str
    group: str  # "spread", "window", "family" or (named extras outside any window) "extra"
    arch: Arch

    @property
    def named(self) -> bool:
        """A named extra (`--extra`), not one the study sampled."""
        return not self.name.startswith(self.group)


def check_window(space: SearchSpace, budget: float) -> None:
    """A window that holds no architecture is bad input."""
    low, high = space.cost_table.macs_range
    if not low <= budget * (1 + WINDOW) or not budget * (1 - WINDOW) <= high:
        raise ConfigError(None, "--budget", f"the window {budget / 1e6:.3g}M MACs +-10 % lies outside the space's "
                          f"range {low / 1e6:.3g}M..{high / 1e6:.3g}M")


def pick_archs(space: SearchSpace, spread: int, window: int, budget: float, seed: int) -> list[StudyArch]:
    """`spread` archs at evenly spaced MACs targets over the whole range, `window` inside budget +-10 %."""
    rng = random.Random(seed)
    low, high = space.cost_table.macs_range
    chosen = []
    for i in range(spread):
        target = low + (high - low) * (i + 0.5) / spread
        near = limits.budget(space, target * 1.05, target * 0.95)
        chosen.append(StudyArch(f"spread{i}", "spread", space.sample(rng, near)))
    inside: list[Arch] = []
    bounds = limits.budget(space, budget * (1 + WINDOW), budget * (1 - WINDOW)) if window else ()
    while len(inside) < window:
        arch = space.sample(rng, bounds)
        if arch not in inside + [a.arch for a in chosen]:
            inside.append(arch)
    return chosen + [StudyArch(f"window{i}", "window", a) for i, a in enumerate(inside)]


def parse_extra(text: str, space: SearchSpace, budget: float, window: bool = True) -> StudyArch:
    """`NAME=ARCH` of `--extra`: ARCH is `all-CHOICE` (every cell that choice, e.g. all-layer: the DeiT-style
    stack), an architecture string or an arch spec YAML file. It joins the window group, so it must lie in it;
    without a `window` (a study of no window architectures, such as the search's front at several budgets) it
    stands in a group of its own, 'extra', at any MACs."""
    name, sep, what = text.partition("=")
    if not sep or not name.isidentifier():
        raise ConfigError(None, "--extra", f"expected NAME=ARCH (e.g. layers=all-layer), got {text!r}")
    if what.startswith("all-"):
        arch = Arch(tuple(tuple(what[4:] for _ in range(stage.cells)) for stage in space.stages))
    elif Path(what).is_file():
        arch = ArchSpec.from_yaml(what).arch
    else:
        arch = Arch.parse(what)
    space.validate(arch, source=f"--extra {name}")
    if not window:
        return StudyArch(name, "extra", arch)
    macs = space.cost_table.macs(arch)
    if not budget * (1 - WINDOW) <= macs <= budget * (1 + WINDOW):
        raise ConfigError(None, "--extra", f"{name} has {macs / 1e6:.3g}M MACs, outside the window "
                          f"{budget / 1e6:.3g}M +-10 % it would join")
    return StudyArch(name, "window", arch)


def probe_archs(spread: list[StudyArch], k: int) -> list[StudyArch]:
    """`k` of the spread architectures, evenly spaced over their MACs order."""
    picks = sorted({round(i * (len(spread) - 1) / (k - 1)) for i in range(k)}) if k > 1 else list(range(k))
    return [spread[i] for i in picks if 0 <= i < len(spread)]

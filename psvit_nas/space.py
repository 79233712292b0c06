"""Search spaces, architectures and architecture specs.

A `SearchSpace` (one YAML file) states everything needed to build any of its subnets.
An `Arch` is one choice per cell: plain, immutable, hashable data. An `ArchSpec` is a
space plus an arch plus its measured numbers; it rebuilds the model on its own.
"""
from __future__ import annotations

import math
import random
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from .errors import ConfigError
from .io import atomic_write_text
from .limits import Limit, fits, format_macs  # noqa: F401 (format_macs: re-exported, as before)

POOLINGS = ("1d", "2d")
_SPACE_KEYS = {"name", "image_size", "in_chans", "num_classes", "patch_size", "pooling", "choices", "stages",
               "reattn_transform_scale", "scale_adjustment"}
_STAGE_KEYS = {"width", "heads", "mlp_ratio", "cells", "choices"}


def parse_budget(text: str | float | int, source: str | None = None, field_name: str = "budget") -> float:
    """Parse a MACs budget such as "1.3G", "450M", "2e9" or 1.3e9 into a number of MACs."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*", str(text))
        if not match:
            raise ConfigError(source, field_name, f"cannot parse budget {text!r}; expected a number with an "
                              "optional K/M/G/T suffix, such as 1.3G")
        scale = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[match.group(2).lower()]
        value = float(match.group(1)) * scale
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(source, field_name, f"budget must be a positive number of MACs, got {text!r}")
    return value


def _deepvit_options(data: Mapping[str, Any], source: str | None) -> dict[str, Any]:
    """The optional DeepViT fields of a space mapping, checked."""
    transform = data.get("reattn_transform_scale", False)
    if not isinstance(transform, bool):
        raise ConfigError(source, "reattn_transform_scale", f"expected true or false, got {transform!r}")
    ratio = data.get("scale_adjustment", 1.0)
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0 < ratio < math.inf:
        raise ConfigError(source, "scale_adjustment", f"expected a positive number, got {ratio!r}")
    return {"reattn_transform_scale": transform, "scale_adjustment": float(ratio)}


@dataclass(frozen=True)
class Arch:
    """One choice name per cell, grouped by stage. Canonical string: 'layer-share|identity-lsla'."""

    stages: tuple[tuple[str, ...], ...]

    def __str__(self) -> str:
        return "|".join("-".join(stage) for stage in self.stages)

    @classmethod
    def parse(cls, text: str) -> "Arch":
        return cls(tuple(tuple(stage.split("-")) for stage in text.strip().split("|")))

    @classmethod
    def from_lists(cls, stages: Iterable[Iterable[str]]) -> "Arch":
        return cls(tuple(tuple(stage) for stage in stages))

    def to_lists(self) -> list[list[str]]:
        return [list(stage) for stage in self.stages]


@dataclass(frozen=True)
class StageConfig:
    width: int
    heads: int
    mlp_ratio: float
    cells: int
    choices: tuple[str, ...]


@dataclass(frozen=True)
class SearchSpace:
    """Everything needed to build any subnet: geometry, widths, heads and allowed choices."""

    name: str
    image_size: int
    in_chans: int
    num_classes: int
    patch_size: int
    pooling: str
    stages: tuple[StageConfig, ...]
    reattn_transform_scale: bool = False  # DeepViT's published models: the re-attention map * head_dim^-0.5
    scale_adjustment: float = 1.0         # DeepViT's: residual branches read x * r and add their output / r
    source: str | None = field(default=None, compare=False, hash=False)

    # ----- loading and validation -------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> "SearchSpace":
        return cls.from_dict(_load_yaml(path), source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> "SearchSpace":
        if not isinstance(data, Mapping):
            raise ConfigError(source, None, "expected a mapping of space fields")
        unknown = set(data) - _SPACE_KEYS
        if unknown:
            raise ConfigError(source, sorted(unknown)[0], f"unknown field; expected one of {sorted(_SPACE_KEYS)}")
        image_size = _positive_int(data, "image_size", source)
        patch_size = _positive_int(data, "patch_size", source)
        if image_size % patch_size:
            raise ConfigError(source, "patch_size", f"image_size {image_size} is not divisible by patch_size "
                              f"{patch_size}")
        pooling = data.get("pooling")
        if pooling not in POOLINGS:
            raise ConfigError(source, "pooling", f"expected one of {list(POOLINGS)}, got {pooling!r}")
        default_choices = _choices(data.get("choices"), "choices", source)
        raw_stages = data.get("stages")
        if not isinstance(raw_stages, list) or not raw_stages:
            raise ConfigError(source, "stages", "expected a non-empty list of stages")
        stages = []
        for i, raw in enumerate(raw_stages):
            where = f"stages[{i}]"
            if not isinstance(raw, Mapping):
                raise ConfigError(source, where, "expected a mapping with width, heads, mlp_ratio, cells")
            unknown = set(raw) - _STAGE_KEYS
            if unknown:
                raise ConfigError(source, f"{where}.{sorted(unknown)[0]}",
                                  f"unknown field; expected one of {sorted(_STAGE_KEYS)}")
            width = _positive_int(raw, "width", source, where)
            heads = _positive_int(raw, "heads", source, where)
            if width % heads:
                raise ConfigError(source, f"{where}.heads", f"width {width} is not divisible by {heads} heads")
            mlp_ratio = raw.get("mlp_ratio", 4.0)
            if not isinstance(mlp_ratio, (int, float)) or isinstance(mlp_ratio, bool) or mlp_ratio <= 0:
                raise ConfigError(source, f"{where}.mlp_ratio", f"expected a positive number, got {mlp_ratio!r}")
            stage_choices = _choices(raw["choices"], f"{where}.choices", source) if "choices" in raw \
                else default_choices
            stages.append(StageConfig(width, heads, float(mlp_ratio), _positive_int(raw, "cells", source, where),
                                      stage_choices))
        space = cls(
            name=str(data.get("name") or (Path(source).stem if source else "space")),
            image_size=image_size, in_chans=_positive_int(data, "in_chans", source),
            num_classes=_positive_int(data, "num_classes", source), patch_size=patch_size,
            pooling=pooling, stages=tuple(stages), source=source, **_deepvit_options(data, source))
        if len(space.stages) > 1 and min(math.prod(s) for s in space.token_shapes) < 1:
            raise ConfigError(source, "stages", "too many pooling steps for the token grid")
        return space

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "image_size": self.image_size, "in_chans": self.in_chans,
            "num_classes": self.num_classes, "patch_size": self.patch_size, "pooling": self.pooling,
            "stages": [{"width": s.width, "heads": s.heads, "mlp_ratio": s.mlp_ratio, "cells": s.cells,
                        "choices": list(s.choices)} for s in self.stages],
        } | {k: v for k, v in (("reattn_transform_scale", self.reattn_transform_scale),
                                ("scale_adjustment", self.scale_adjustment)) if v != getattr(SearchSpace, k)}

    # ----- geometry ----------------------------------------------------------------
    @property
    def has_cls(self) -> bool:
        """PSViT-1D keeps a CLS token; PSViT-2D averages its tokens."""
        return self.pooling == "1d"

    @property
    def token_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Patch-token shape per stage: (H, W) for 2-D pooling, (L,) for 1-D pooling (CLS excluded)."""
        side = self.image_size // self.patch_size
        shape: tuple[int, ...] = (side, side) if self.pooling == "2d" else (side * side,)
        shapes = [shape]
        for _ in self.stages[1:]:
            shape = tuple((n - 1) // 2 + 1 for n in shape)  # stride-2 conv / max pool, kernel 3, padding 1
            shapes.append(shape)
        return tuple(shapes)

    def tokens(self, stage: int) -> int:
        """Number of tokens a stage's cells see, CLS included."""
        return math.prod(self.token_shapes[stage]) + int(self.has_cls)

    # ----- architectures -------------------------------------------------------------
    @property
    def num_archs(self) -> int:
        return math.prod(len(s.choices) ** s.cells for s in self.stages)

    def validate(self, arch: Arch, source: str | None = None) -> Arch:
        """Raise ConfigError unless `arch` is an architecture of this space."""
        if len(arch.stages) != len(self.stages):
            raise ConfigError(source, "arch", f"expected {len(self.stages)} stages, got {len(arch.stages)}")
        for i, (cells, stage) in enumerate(zip(arch.stages, self.stages)):
            if len(cells) != stage.cells:
                raise ConfigError(source, f"arch[{i}]", f"expected {stage.cells} cells, got {len(cells)}")
            for j, choice in enumerate(cells):
                if choice not in stage.choices:
                    raise ConfigError(source, f"arch[{i}][{j}]",
                                      f"unknown choice {choice!r}; expected one of {list(stage.choices)}")
        return arch

    def sample(self, rng: random.Random, limits: Sequence[Limit] = (), tries: int = 200) -> Arch:
        """A uniformly random architecture; within `limits` (a `limits.budget`) by rejection sampling, then
        repair."""
        arch = Arch(tuple(tuple(rng.choice(s.choices) for _ in range(s.cells)) for s in self.stages))
        for _ in range(tries):
            if fits(limits, arch):
                return arch
            arch = Arch(tuple(tuple(rng.choice(s.choices) for _ in range(s.cells)) for s in self.stages))
        return self.repair(arch, rng, limits)

    def median_macs(self, draws: int = 2000, seed: int = 0) -> float:
        """The median MACs of uniformly sampled architectures: the default budget of the quickstart and the
        study's window."""
        rng = random.Random(seed)
        return statistics.median(self.cost_table.macs(self.sample(rng)) for _ in range(draws))

    def repair(self, arch: Arch, rng: random.Random, limits: Sequence[Limit], steps: int = 1000) -> Arch:
        """Move random cells to cheaper (or dearer) choices until the arch satisfies every limit."""
        cells = [list(stage) for stage in arch.stages]
        for _ in range(steps):
            current = Arch.from_lists(cells)
            broken = next((limit for limit in limits if not limit.ok(current)), None)
            if broken is None:
                return current
            too_big = broken.high is not None and broken.value(current) > broken.high
            moves = []
            for s, stage in enumerate(cells):
                costs = broken.cells[s]
                for i, choice in enumerate(stage):
                    better = [c for c in self.stages[s].choices
                              if (costs[c] < costs[choice] if too_big else costs[c] > costs[choice])]
                    moves.extend((s, i, c) for c in better)
            s, i, c = rng.choice(moves)
            cells[s][i] = c
        bounds = "; ".join(str(limit) for limit in limits)
        raise ConfigError(None, None, f"no architecture of space {self.name!r} found within {bounds}")

    def mutate(self, arch: Arch, rng: random.Random, prob: float) -> Arch:
        """Each cell independently takes a new uniformly drawn choice with probability `prob`."""
        return Arch(tuple(tuple(rng.choice(stage.choices) if rng.random() < prob else c for c in cells)
                          for cells, stage in zip(arch.stages, self.stages)))

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> tuple[Arch, Arch]:
        """Uniform crossover: each cell swaps between the two parents with probability 0.5."""
        child_a, child_b = [], []
        for sa, sb in zip(a.stages, b.stages):
            swap = [rng.random() < 0.5 for _ in sa]
            child_a.append(tuple(y if w else x for x, y, w in zip(sa, sb, swap)))
            child_b.append(tuple(x if w else y for x, y, w in zip(sa, sb, swap)))
        return Arch(tuple(child_a)), Arch(tuple(child_b))

    # ----- cost and specs -------------------------------------------------------------
    @property
    def cost_table(self):
        from .cost import cost_table  # cost.py reads spaces; imported here to keep the dependency one-way

        return cost_table(self)

    def spec(self, arch: Arch, **metrics: Any) -> "ArchSpec":
        return ArchSpec(self, self.validate(arch), dict(metrics))


@dataclass(frozen=True)
class ArchSpec:
    """A standalone architecture: its space (embedded, so no space file is needed), arch and numbers."""

    space: SearchSpace
    arch: Arch
    metrics: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch.to_lists(), "arch_string": str(self.arch), **self.metrics,
                "space": self.space.to_dict()}

    def to_yaml(self, path: str | Path) -> None:
        header = "# psvit-nas architecture spec: one choice per cell per stage; rebuild with PSViT.from_spec\n"
        atomic_write_text(path, header + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None))

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ArchSpec":
        return cls.from_dict(_load_yaml(path), source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> "ArchSpec":
        if not isinstance(data, Mapping) or "space" not in data or "arch" not in data:
            raise ConfigError(source, None, "expected an architecture spec with fields 'arch' and 'space'")
        space = SearchSpace.from_dict(data["space"], source=source)
        raw = data["arch"]
        if not isinstance(raw, list) or not all(isinstance(s, list) for s in raw):
            raise ConfigError(source, "arch", "expected a list of stages, each a list of choice names")
        arch = space.validate(Arch.from_lists(raw), source)
        metrics = {k: v for k, v in data.items() if k not in ("arch", "arch_string", "space")}
        return cls(space, arch, metrics)


def _load_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), None, "file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(str(path), None, f"invalid YAML ({str(err).splitlines()[0]})") from None


def _positive_int(data: Mapping, key: str, source: str | None, where: str | None = None) -> int:
    name = f"{where}.{key}" if where else key
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(source, name, f"expected a positive integer, got {value!r}")
    return value


def _choices(value: Any, name: str, source: str | None) -> tuple[str, ...]:
    """A list of registered cell choices (None: the default five)."""
    from .choices import CELL_CHOICES, DEFAULT_CHOICES

    if value is None:
        return DEFAULT_CHOICES
    if not isinstance(value, list) or not value:
        raise ConfigError(source, name, f"expected a non-empty list drawn from {list(CELL_CHOICES)}")
    for choice in value:
        if choice not in CELL_CHOICES:
            raise ConfigError(source, name, f"unknown choice {choice!r}; expected one of {list(CELL_CHOICES)}")
    return tuple(dict.fromkeys(value))

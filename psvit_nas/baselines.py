"""The hand-designed family a search is judged against: plain transformer stacks of growing depth.

Member `layersD` has D `layer` cells at the start of every stage and `identity` in the rest, so the family scales
depth evenly over the stages, as DeiT's stacks are one depth of one layer kind; `layersN` of an N-cell space is
the all-`layer` stack. Their MACs form the ladder that a search's Pareto front is compared with.
"""
from __future__ import annotations

from .errors import ConfigError
from .space import Arch, SearchSpace


def family_depths(space: SearchSpace) -> tuple[int, ...]:
    """Every depth the space can hold: 1 to its shortest stage's number of cells."""
    return tuple(range(1, min(stage.cells for stage in space.stages) + 1))


def layer_family(space: SearchSpace, depths: tuple[int, ...] | None = None) -> dict[str, Arch]:
    """Name (`layers3`) -> architecture of each depth (default: every depth the space holds; `()`: none),
    shallowest first; a depth the space cannot hold (or a space without `layer` and `identity` in every stage)
    is bad input naming `--family`."""
    allowed = family_depths(space)
    depths = allowed if depths is None else depths
    if not depths:
        return {}
    bad = [d for d in depths if d not in allowed]
    if bad or len(set(depths)) != len(depths):
        raise ConfigError(space.source, "--family", f"expected distinct depths in {allowed[0]}..{allowed[-1]} "
                          f"(layer cells per stage), got {list(depths)}")
    for i, stage in enumerate(space.stages):
        missing = {"layer", "identity"} - set(stage.choices)
        if missing:
            raise ConfigError(space.source, f"stages[{i}].choices", f"the layer family needs {sorted(missing)}, "
                              f"which the stage does not allow")
    return {f"layers{d}": Arch(tuple(tuple("layer" if j < d else "identity" for j in range(stage.cells))
                                     for stage in space.stages)) for d in sorted(depths)}

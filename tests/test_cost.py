import random

import pytest

from conftest import SPACE_FILES, SPACES
from psvit_nas import ArchSpec, PSViT, SearchSpace, count_cost
from psvit_nas.cost import flop_counter_macs as _reference_macs


@pytest.mark.parametrize("path", SPACE_FILES, ids=lambda p: p.stem)
def test_cost_matches_flop_counter_and_params(path):
    """DESIGN.md invariant 2, for random archs of every shipped space."""
    space = SearchSpace.from_yaml(path)
    rng = random.Random(0)
    for _ in range(2 if "small" in path.stem else 3):
        spec = space.spec(space.sample(rng))
        model = PSViT.from_spec(spec)
        cost = count_cost(spec)
        assert cost.params == sum(p.numel() for p in model.parameters())
        assert cost.macs == pytest.approx(_reference_macs(model), rel=0.005)
        assert cost.macs == sum(m for m, _ in cost.parts.values())


def test_every_choice_is_costed_exactly():
    space = SearchSpace.from_yaml(SPACES / "digits.yaml")
    for choice in space.stages[0].choices:
        arch = space.sample(random.Random(0)).__class__(tuple((choice,) * s.cells for s in space.stages))
        spec = space.spec(arch)
        model = PSViT.from_spec(spec)
        assert count_cost(spec).params == sum(p.numel() for p in model.parameters()), choice
        assert count_cost(spec).macs == _reference_macs(model), choice


def test_deit_tiny_baseline():
    """DESIGN.md invariant 3."""
    spec = ArchSpec.from_yaml(SPACES / "deit_tiny.yaml")
    cost = count_cost(spec)
    assert 1.25e9 <= cost.macs <= 1.26e9
    assert round(cost.params / 1e6, 2) == 5.72
    assert cost.params == sum(p.numel() for p in PSViT.from_spec(spec).parameters())
    assert cost.macs == _reference_macs(PSViT.from_spec(spec))

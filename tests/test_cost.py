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


@pytest.fixture
def toy_choice():
    """A new cell choice, registered in its one place and removed after the test: an MLP-only layer."""
    from torch import nn

    from psvit_nas.choices import CELL_CHOICES, CellChoice, register_choice
    from psvit_nas.cost import linear_cost, sum_costs
    from psvit_nas.nn import layer_norm

    class MlpOnly(nn.Module):
        def __init__(self, dim: int, hidden: int) -> None:
            super().__init__()
            self.norm, self.fc1, self.fc2 = layer_norm(dim), nn.Linear(dim, hidden), nn.Linear(hidden, dim)

        def forward(self, x):
            return x + self.fc2(nn.functional.gelu(self.fc1(self.norm(x))))

    hidden = lambda a: int(a.dim * a.mlp_ratio)  # noqa: E731
    register_choice(CellChoice(
        "mlponly", lambda a: MlpOnly(a.dim, hidden(a)),
        lambda a: sum_costs(linear_cost(a.tokens, a.dim, hidden(a)), linear_cost(a.tokens, hidden(a), a.dim),
                            (0, 2 * a.dim)), maps=0))
    yield "mlponly"
    del CELL_CHOICES["mlponly"]


def test_a_new_choice_is_registered_in_one_place(toy_choice, tmp_path):
    from psvit_nas import ConfigError, Supernet
    from psvit_nas.analysis import layer_labels

    data = SearchSpace.from_yaml(SPACES / "digits.yaml").to_dict()
    data["stages"] = [dict(stage, choices=["layer", toy_choice, "identity"]) for stage in data["stages"]]
    space = SearchSpace.from_dict(data)
    arch = space.sample(random.Random(1))
    arch = arch.__class__(((toy_choice, "layer", "identity", toy_choice),) + arch.stages[1:])
    spec = space.spec(arch)
    model = PSViT.from_spec(spec)
    cost = count_cost(spec)
    assert cost.params == sum(p.numel() for p in model.parameters())
    assert cost.macs == _reference_macs(model)  # the choice's own cost model is exact
    assert not [label for label in layer_labels(model) if toy_choice in label]  # it yields no attention map
    net = Supernet(space)
    assert sum(toy_choice in cell for stage in net.stages for cell in stage) == sum(s.cells for s in space.stages)
    del data["stages"][0]["choices"]
    data["choices"] = ["layer", "nochoice"]
    with pytest.raises(ConfigError, match="nochoice.*mlponly"):  # the error lists every registered choice
        SearchSpace.from_dict(data, source="space.yaml")

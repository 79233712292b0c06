import random

import pytest

from conftest import SPACE_FILES, SPACES
from psvit_nas import Arch, ArchSpec, ConfigError, SearchSpace, parse_budget
from psvit_nas.limits import budget


@pytest.mark.parametrize("text,value", [("1.3G", 1.3e9), ("450M", 4.5e8), ("2e9", 2e9), ("12k", 12e3), (7, 7.0)])
def test_parse_budget(text, value):
    assert parse_budget(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["1.3X", "", "G", "-1G", "0"])
def test_parse_budget_rejects(text):
    with pytest.raises(ConfigError):
        parse_budget(text)


def test_shipped_spaces_load_and_describe_their_geometry():
    names = {p.stem for p in SPACE_FILES}
    assert {"psvit_1d_tiny", "psvit_2d_tiny", "psvit_2d_small", "tiny_imagenet", "digits"} <= names
    two_d = SearchSpace.from_yaml(SPACES / "psvit_2d_tiny.yaml")
    assert two_d.token_shapes == ((14, 14), (7, 7), (4, 4)) and not two_d.has_cls
    one_d = SearchSpace.from_yaml(SPACES / "psvit_1d_tiny.yaml")
    assert one_d.token_shapes == ((196,), (98,), (49,)) and [one_d.tokens(s) for s in range(3)] == [197, 99, 50]
    assert two_d.num_archs == 5 ** 18


@pytest.mark.parametrize("name,budget", [("psvit_2d_tiny", 1.3e9), ("psvit_1d_tiny", 1.3e9),
                                         ("psvit_2d_small", 4.6e9)])
def test_budget_cuts_through_the_middle(name, budget):
    space = SearchSpace.from_yaml(SPACES / f"{name}.yaml")
    rng = random.Random(1)
    under = sum(space.cost_table.macs(space.sample(rng)) <= budget for _ in range(1000)) / 1000
    assert 0.3 < under < 0.7


def test_arch_string_round_trip_and_hashing():
    space = SearchSpace.from_yaml(SPACES / "digits.yaml")
    arch = space.sample(random.Random(3))
    assert Arch.parse(str(arch)) == arch
    assert len({arch, Arch.parse(str(arch))}) == 1


def test_budget_sampling_rejection_and_repair_stay_inside():
    space = SearchSpace.from_yaml(SPACES / "psvit_2d_tiny.yaml")
    rng = random.Random(0)
    low = space.cost_table.macs_range[0]
    for max_macs, min_macs in [(1.3e9, None), (1.3e9, 1.0e9), (low * 1.5, None), (2.3e9, 2.2e9)]:
        for _ in range(20):
            macs = space.cost_table.macs(space.sample(rng, budget(space, max_macs, min_macs)))
            assert macs <= max_macs and (min_macs is None or macs >= min_macs)


def test_mutation_and_crossover_stay_in_space():
    space = SearchSpace.from_yaml(SPACES / "psvit_1d_tiny.yaml")
    rng = random.Random(0)
    a, b = space.sample(rng), space.sample(rng)
    assert space.mutate(a, rng, 0.0) == a
    changed = sum(x != y for sx, sy in zip(a.stages, space.mutate(a, rng, 1.0).stages) for x, y in zip(sx, sy))
    assert changed > 0
    c, d = space.crossover(a, b, rng)
    for child in (c, d):
        space.validate(child)
    for sa, sb, sc, sd in zip(a.stages, b.stages, c.stages, d.stages):
        for x, y, u, v in zip(sa, sb, sc, sd):
            assert {u, v} == {x, y}


def test_spec_yaml_round_trip(tmp_path):
    space = SearchSpace.from_yaml(SPACES / "psvit_2d_tiny.yaml")
    spec = space.spec(space.sample(random.Random(5)), macs=123, fitness=0.5)
    spec.to_yaml(tmp_path / "a.yaml")
    back = ArchSpec.from_yaml(tmp_path / "a.yaml")
    assert back == spec and back.metrics == {"macs": 123, "fitness": 0.5}
    assert back.space.to_dict() == space.to_dict()


def test_deit_tiny_spec_loads():
    spec = ArchSpec.from_yaml(SPACES / "deit_tiny.yaml")
    assert spec.arch.stages == (("layer",) * 12,)

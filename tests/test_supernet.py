import random

import pytest
import torch

from conftest import SPACE_FILES, SPACES
from psvit_nas import Arch, PSViT, SearchSpace, Supernet


@pytest.mark.parametrize("path", SPACE_FILES, ids=lambda p: p.stem)
def test_supernet_path_equals_exported_model(path):
    """DESIGN.md invariant 1, for random archs of every shipped space (1-D and 2-D)."""
    space = SearchSpace.from_yaml(path)
    net = Supernet(space).eval()
    rng = random.Random(0)
    x = torch.randn(2, space.in_chans, space.image_size, space.image_size)
    for _ in range(2):
        arch = space.sample(rng)
        model = net.export(arch).eval()
        assert isinstance(model, PSViT)
        with torch.no_grad():
            y = net(x, arch)
            assert y.shape == (2, space.num_classes)
            torch.testing.assert_close(model(x), y, atol=1e-5, rtol=0)


def test_export_holds_only_the_path_and_owns_its_weights():
    space = SearchSpace.from_yaml(SPACES / "digits.yaml")
    net = Supernet(space)
    arch = space.sample(random.Random(1))
    model = net.export(arch)
    keys = set(model.state_dict())
    assert keys == set(net.path_state_dict(arch))
    assert len(keys) < len(net.state_dict())
    assert sum(p.numel() for p in model.parameters()) == space.cost_table(arch).params
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert not torch.equal(next(model.parameters()), next(net.parameters()))


def test_only_the_sampled_path_gets_gradients():
    space = SearchSpace.from_yaml(SPACES / "digits.yaml")
    net = Supernet(space).train()
    arch = Arch(tuple(tuple(stage.choices[(s + i) % len(stage.choices)] for i in range(stage.cells))
                      for s, stage in enumerate(space.stages)))
    x = torch.randn(4, 1, 8, 8)
    net(x, arch).sum().backward()
    for name, param in net.named_parameters():
        parts = name.split(".")
        on_path = parts[0] != "stages" or arch.stages[int(parts[1])][int(parts[2])] == parts[3]
        assert (param.grad is not None) == on_path, name


def test_two_threads_evaluate_two_archs_on_one_supernet():
    from concurrent.futures import ThreadPoolExecutor

    space = SearchSpace.from_yaml(SPACES / "digits.yaml")
    net = Supernet(space).eval()
    rng = random.Random(2)
    archs = [space.sample(rng) for _ in range(4)]
    x = torch.randn(8, 1, 8, 8)
    with torch.no_grad():
        expected = [net(x, a) for a in archs]
        with ThreadPoolExecutor(2) as pool:
            got = list(pool.map(lambda a: net(x, a), archs))
    for e, g in zip(expected, got):
        torch.testing.assert_close(e, g)


def test_supernet_rejects_an_arch_from_another_space():
    net = Supernet(SearchSpace.from_yaml(SPACES / "digits.yaml"))
    other = SearchSpace.from_yaml(SPACES / "tiny_imagenet.yaml").sample(random.Random(0))
    with pytest.raises(ValueError):
        net(torch.randn(1, 1, 8, 8), other)

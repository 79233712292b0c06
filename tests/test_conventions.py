"""timm's model conventions: stochastic depth, no_weight_decay, the head contract (num_classes, num_features,
global_pool, get_classifier, reset_classifier, forward_head), gradient checkpointing, timm's optimizer and loss."""
import random

import numpy as np
import pytest
import torch

from conftest import SPACES
from psvit_nas import PSViT, SearchSpace, Supernet
from psvit_nas.cli import main
from psvit_nas.nn.blocks import Block
from psvit_nas.space import Arch
from psvit_nas.train import param_groups

DIGITS = SearchSpace.from_yaml(SPACES / "digits.yaml")
EVERY_CHOICE = Arch((("layer", "share", "reattn", "lsla"), ("lsla", "identity", "layer", "share"),
                     ("reattn", "layer", "lsla", "identity")))


def test_drop_path_rises_linearly_over_the_cells_and_is_off_in_eval():
    model = PSViT.from_spec(DIGITS.spec(EVERY_CHOICE), drop_path_rate=0.3)
    rates = [cell.drop_path.p if isinstance(cell, Block) else cell.first.drop_path.p if hasattr(cell, "first")
             else None for stage in model.stages for cell in stage]
    expected = [0.3 * i / 11 for i in range(12)]
    assert [r for r in rates if r is not None] == pytest.approx([e for e, r in zip(expected, rates) if r is not None])
    plain = PSViT.from_spec(DIGITS.spec(EVERY_CHOICE))
    plain.load_state_dict(model.state_dict())  # no parameters of its own
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(model.eval()(x), plain.eval()(x))
    torch.manual_seed(0)
    assert not torch.equal(model.train()(x), plain.train()(x))  # on in training
    supernet = Supernet(DIGITS, drop_path_rate=0.3)
    assert supernet.stages[2][3]["layer"].drop_path.p == pytest.approx(0.3)


class _Shift(torch.nn.Module):
    def forward(self, x, **kwargs):
        return x + 5, None


def test_a_dropped_residual_branch_passes_its_input_through():
    block = Block(8, _Shift(), 2.0, drop_path=1.0).train()  # any branch output: dropped, it adds nothing
    x = torch.randn(3, 5, 8)
    assert torch.equal(block(x), x)


def test_no_weight_decay_decides_the_parameter_groups():
    model = PSViT.from_spec(DIGITS.spec(EVERY_CHOICE))
    names = model.no_weight_decay()
    assert {"stem.pos_embed", "stages.0.3.attn.scale", "stages.0.3.attn.inner_bias"} <= names
    decay, no_decay = (set(map(id, g["params"])) for g in param_groups(model, 0.05))
    for name, p in model.named_parameters():
        assert (id(p) in no_decay) == (p.ndim <= 1 or name in names), name
        assert (id(p) in decay) != (id(p) in no_decay)


def test_gradient_checkpointing_gives_the_same_gradients():
    model = PSViT.from_spec(DIGITS.spec(EVERY_CHOICE)).train()
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))

    def grads():
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = grads()
    model.set_grad_checkpointing()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, grads()))


def _three_classes(root):
    """A 3-class image folder of 8x8 grayscale images (the digits space's input)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 3)):
        for c in ("a", "b", "c"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(root / split / c / f"{i}.png")
    return str(root)


@pytest.mark.slow
def test_fine_tune_exported_weights_on_three_classes(tmp_path, capsys):
    spec = DIGITS.spec(DIGITS.sample(random.Random(0)))
    spec.to_yaml(tmp_path / "arch.yaml")
    source = PSViT.from_spec(spec)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    assert main(["train", "--arch", str(tmp_path / "arch.yaml"), "--weights", str(tmp_path / "model.pt"),
                 "--num-classes", "3", "--data", _three_classes(tmp_path / "data"), "--epochs", "1",
                 "--batch-size", "4", "--lr", "1e-9", "--drop-path", "0.1",
                 "--grad-checkpointing", "--out", str(tmp_path / "ft")]) == 0
    state = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)
    assert state["model"]["head.weight"].shape == (3, 64)
    # started from the exported weights (a learning rate of 1e-9 barely moves them), not from a new init
    assert torch.allclose(state["model"]["stem.pos_embed"], source.stem.pos_embed, atol=1e-6)
    model = PSViT.from_spec(spec)
    model.reset_classifier(3)
    assert model.spec.space.num_classes == 3 and model(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def test_search_strategies_are_classes_behind_one_interface_and_register_nothing_in_deap():
    from deap import creator

    from psvit_nas.search.strategies import STRATEGIES, Strategy

    assert not [name for name in vars(creator) if name.startswith("Psvit")]  # no import-time creator types
    assert set(STRATEGIES) == {"evolution", "random", "nsga2"}
    for name, cls in STRATEGIES.items():
        assert issubclass(cls, Strategy) and cls.name == name and cls.propose is not Strategy.propose

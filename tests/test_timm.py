"""timm's model contract on psvit-nas models: the registry (`import psvit_nas.timm`), the head contract,
`features_only` and `forward_intermediates`, weights loaded through timm, TorchScript and FX, DeepViT's options,
and fine-tuning with timm's own optimizer and loss."""
import random

import numpy as np
import pytest
import timm
import torch

import psvit_nas.timm as registry
from conftest import SPACE_FILES, SPACES
from psvit_nas import PSViT, SearchSpace
from psvit_nas.errors import ConfigError
from psvit_nas.export import save_artifact
from psvit_nas.nn import ReAttention
from psvit_nas.nn.blocks import Block
from psvit_nas.space import Arch
from psvit_nas.train.checkpoint import load_weights

DIGITS = SearchSpace.from_yaml(SPACES / "digits.yaml")
EVERY_CHOICE = Arch((("layer", "share", "reattn", "lsla"), ("lsla", "identity", "layer", "share"),
                     ("reattn", "layer", "lsla", "identity")))
ONE_D = SearchSpace.from_yaml(SPACES / "psvit_1d_tiny.yaml")
ONE_D_EVERY_CHOICE = registry.reference_spec("psvit_nas_1d_tiny").arch


def _path_with_every_choice(space: SearchSpace) -> Arch:
    """A sampled path of `space` that uses as many of its choices as it can."""
    rng = random.Random(0)
    return max((space.sample(rng) for _ in range(200)), key=lambda a: len({c for s in a.stages for c in s}))


def _images(space: SearchSpace, n: int = 2) -> torch.Tensor:
    return torch.randn(n, space.in_chans, space.image_size, space.image_size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("config", [p.name for p in SPACE_FILES])
def test_create_model_features_only_and_intermediates_on_every_shipped_space(config):
    space = SearchSpace.from_yaml(SPACES / config)
    spec = space.spec(_path_with_every_choice(space))
    x = _images(space)
    torch.manual_seed(0)
    features = timm.create_model("psvit_nas", spec=spec, features_only=True).eval()
    info = features.feature_info
    assert info.channels() == [s.width for s in space.stages] and info.module_name() == \
        [f"stages.{i}" for i in range(len(space.stages))]
    with torch.no_grad():
        maps = features(x)
    for fmap, shape, reduction, width in zip(maps, space.token_shapes, info.reduction(), info.channels()):
        grid = shape if len(shape) == 2 else (1, shape[0])  # 1-D pooling keeps a token sequence: a 1 x L map
        assert fmap.shape == (2, width, *grid)
        if len(shape) == 2:  # the grid shrinks with the reduction (ceil, as the stride-2 pooling pads)
            assert grid[0] == -(-space.image_size // reduction)
    torch.manual_seed(0)  # the same weights as `features`
    model = timm.create_model("psvit_nas", spec=spec).eval()
    assert model.pretrained_cfg["input_size"] == (space.in_chans, space.image_size, space.image_size)
    assert model.pretrained_cfg["first_conv"] == "stem.proj" and model.pretrained_cfg["classifier"] == "head"
    with torch.no_grad():
        final, taken = model.forward_intermediates(x, indices=[0, -1])
        assert [t.shape for t in taken] == [maps[0].shape, maps[-1].shape]
        assert torch.equal(taken[0], maps[0]) and torch.allclose(final, model.forward_features(x))
        tokens = model.forward_intermediates(x, indices=1, output_fmt="NLC", intermediates_only=True)
        assert len(tokens) == 1 and tokens[0].shape == (2, space.tokens(len(space.stages) - 1), space.stages[-1].width)


def test_registered_reference_models_carry_their_pretrained_cfg():
    assert set(registry.REFERENCE_PATHS) <= set(timm.list_models("psvit_nas*"))
    for name in registry.REFERENCE_PATHS:
        cfg = timm.get_pretrained_cfg(name).to_dict()
        spec = registry.reference_spec(name)
        assert cfg["input_size"] == (3, 224, 224) and cfg["num_classes"] == spec.space.num_classes == 1000
        assert cfg["mean"] == (0.485, 0.456, 0.406) and cfg["crop_pct"] == 0.875 and cfg["first_conv"] == "stem.proj"
    model = timm.create_model("psvit_nas_deit_tiny", num_classes=0)  # the DeiT-Tiny spec, pooled features
    assert model.num_features == 192 and isinstance(model.get_classifier(), torch.nn.Identity)
    assert str(model.spec.arch) == "-".join(["layer"] * 12)


@pytest.mark.parametrize("config", ["digits.yaml", "psvit_1d_tiny.yaml"])
def test_timm_head_contract_pooled_features_and_reset_both_ways(config):
    space = SearchSpace.from_yaml(SPACES / config)
    model = timm.create_model("psvit_nas", spec=space.spec(space.sample(random.Random(0)))).eval()
    assert model.num_classes == space.num_classes and model.num_features == model.head_hidden_size
    assert model.global_pool == ("token" if space.has_cls else "avg") and model.get_classifier() is model.head
    x = _images(space)
    with torch.no_grad():
        tokens = model.forward_features(x)
        pooled = model.forward_head(tokens, pre_logits=True)
        logits = model(x)
    assert pooled.shape == (2, model.num_features)
    assert torch.allclose(model.head(pooled), logits)
    model.reset_classifier(0)  # no head: the model returns its pooled features, as timm's do
    assert isinstance(model.get_classifier(), torch.nn.Identity) and model.num_classes == 0
    with torch.no_grad():
        assert torch.allclose(model(x), pooled)
    model.reset_classifier(5, global_pool="")
    assert model.get_classifier().out_features == 5 and model.spec.space.num_classes == 5
    with torch.no_grad():
        assert torch.allclose(model.forward_head(tokens, pre_logits=True), tokens)  # '' pools nothing
    with pytest.raises(ValueError, match="global_pool"):
        model.reset_classifier(5, global_pool="max")
    pooled_model = timm.create_model("psvit_nas", spec=model.spec, num_classes=0)
    assert pooled_model(x).shape == (2, model.num_features)


def test_weights_loaded_through_timm_equal_load_weights(tmp_path):
    spec = DIGITS.spec(EVERY_CHOICE)
    weights = tmp_path / "model.safetensors"
    save_artifact(PSViT.from_spec(spec), weights, "safetensors")
    ours = load_weights(str(weights), spec).eval()
    theirs = timm.create_model("psvit_nas", pretrained=True, pretrained_cfg_overlay=dict(file=str(weights))).eval()
    x = _images(DIGITS, 4)
    with torch.no_grad():
        assert (theirs(x) - ours(x)).abs().max().item() == 0
    retargeted = timm.create_model("psvit_nas", pretrained=True, num_classes=3,
                                   pretrained_cfg_overlay=dict(file=str(weights)))  # timm drops the old head
    assert retargeted(x).shape == (4, 3)
    assert torch.equal(retargeted.stem.pos_embed, ours.stem.pos_embed)
    with pytest.raises(ValueError, match="in_chans"):
        timm.create_model("psvit_nas", spec=spec, in_chans=3)
    spec.to_yaml(tmp_path / "arch.yaml")
    with pytest.raises(ConfigError, match="psvit_nas_spec"):  # a weights file psvit-nas did not write
        from safetensors.torch import save_file
        save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        timm.create_model("psvit_nas", spec=str(tmp_path / "other.safetensors"))


@pytest.mark.parametrize("spec", [DIGITS.spec(EVERY_CHOICE), ONE_D.spec(ONE_D_EVERY_CHOICE)], ids=["2d", "1d"])
def test_torchscript_and_fx_then_torchscript_equal_eager(spec):
    model = PSViT.from_spec(spec).eval()
    x = _images(spec.space)
    with torch.no_grad():
        eager = model(x)
        scripted = torch.jit.script(model)(x)
        traced = torch.jit.script(torch.fx.symbolic_trace(model))(x)
    torch.testing.assert_close(scripted, eager, atol=1e-5, rtol=0)
    torch.testing.assert_close(traced, eager, atol=1e-5, rtol=0)
    features = torch.jit.script(timm.create_model("psvit_nas", spec=spec, features_only=True).eval())
    with torch.no_grad():
        assert [m.shape[1] for m in features(x)] == [s.width for s in spec.space.stages]


def test_prune_intermediate_layers_keeps_the_stages_the_features_need():
    model = timm.create_model("psvit_nas", spec=DIGITS.spec(EVERY_CHOICE)).eval()
    x = _images(DIGITS)
    with torch.no_grad():
        before = model.forward_intermediates(x, intermediates_only=True)
    assert model.prune_intermediate_layers([0, 1]) == [0, 1]
    assert len(model.stages) == 2 and len(model.pools) == 1 and model.num_features == DIGITS.stages[1].width
    assert isinstance(model.norm, torch.nn.Identity) and isinstance(model.head, torch.nn.Identity)
    with torch.no_grad():
        after = model.forward_intermediates(x, intermediates_only=True)
    assert len(after) == 2 and all(torch.equal(a, b) for a, b in zip(after, before))


def test_deepvit_options_scale_the_reattention_map_and_the_residual_branches(tmp_path):
    x = torch.randn(2, 16, 32)
    plain, scaled = ReAttention(32, 4).eval(), ReAttention(32, 4, transform_scale=True).eval()
    scaled.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(scaled(x)[1].mixed, plain(x)[1].mixed * 8 ** -0.5)  # head_dim 8
    block = Block(32, plain, 2.0, scale_adjustment=0.5).eval()
    with torch.no_grad():
        mid = x + block.attn(block.norm1(x * 0.5))[0] / 0.5
        torch.testing.assert_close(block(x), mid + block.mlp(block.norm2(mid * 0.5)) / 0.5)
    data = DIGITS.to_dict() | {"reattn_transform_scale": True, "scale_adjustment": 0.5}
    space = SearchSpace.from_dict(data)
    model = PSViT.from_spec(space.spec(EVERY_CHOICE))
    assert model.stages[0][2].attn.map_scale == 16 ** -0.5 and model.stages[0][0].scale_adjustment == 0.5
    assert SearchSpace.from_dict(space.to_dict()) == space and "scale_adjustment" not in DIGITS.to_dict()
    with pytest.raises(ConfigError, match="scale_adjustment"):
        SearchSpace.from_dict(DIGITS.to_dict() | {"scale_adjustment": -1}, source="space.yaml")


def test_fine_tune_a_registry_model_with_timms_optimizer_and_loss():
    from timm.loss import LabelSmoothingCrossEntropy
    from timm.optim import create_optimizer_v2

    model = timm.create_model("psvit_nas", spec=DIGITS.spec(EVERY_CHOICE), drop_path_rate=0.1).train()
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)  # reads no_weight_decay()
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(model.stem.pos_embed) not in decayed and id(model.head.weight) in decayed
    loss_fn, torch_rng = LabelSmoothingCrossEntropy(0.1), torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 1, 8, 8, generator=torch_rng), torch.randint(0, 10, (16,), generator=torch_rng)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]  # five steps on one batch fit it

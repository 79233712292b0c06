import pytest
import torch

from psvit_nas.analysis import attention_maps
from psvit_nas.choices import CellArgs, make_cell
from psvit_nas.nn import Attention, LSLAttention, Pool1d, Pool2d, ReAttention, SharePair, relative_index

B, N, C, H = 2, 16, 32, 4


def test_every_choice_keeps_token_shape():
    x = torch.randn(B, N, C)
    for choice in ["layer", "share", "identity", "reattn", "lsla"]:
        cell = make_cell(choice, CellArgs(C, H, 2.0, (4, 4), False)).eval()
        assert cell(x).shape == (B, N, C)
        maps = attention_maps(cell, x)
        assert len(maps) == {"identity": 0, "share": 2}.get(choice, 1)
        assert all(m.shape == (B, H, N, N) for m in (maps[0] if choice == "reattn" else maps))


def test_fused_and_explicit_attention_agree():
    attn = Attention(C, H)
    x = torch.randn(B, N, C)
    fused, none = attn(x)
    explicit, amap = attn(x, return_attn=True)
    assert none is None and amap.shape == (B, H, N, N)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(amap.sum(-1), torch.ones(B, H, N))


def test_share_pair_second_layer_has_no_qk_and_follows_the_first_map():
    pair = SharePair(C, H, 2.0)
    names = [n for n, _ in pair.second.attn.named_parameters()]
    assert sorted(names) == ["proj.bias", "proj.weight", "v.bias", "v.weight"]
    x = torch.randn(B, N, C)
    maps = attention_maps(pair, x)
    assert len(maps) == 2 and maps[0] is maps[1]
    shared = pair.second.attn
    a1 = torch.rand(B, H, N, N).softmax(-1)
    a2 = torch.rand(B, H, N, N).softmax(-1)
    assert not torch.allclose(shared(x, a1)[0], shared(x, a2)[0])
    # Changing only the first layer's Q weights changes the map the second layer applies.
    out_before = pair.second(x, pair.first.attn(x, return_attn=True)[1])
    with torch.no_grad():
        pair.first.attn.qkv.weight[:C] += torch.randn(C, C)
    out_after = pair.second(x, pair.first.attn(x, return_attn=True)[1])
    assert not torch.allclose(out_before, out_after)


def _head0_query_perturbed(module):
    with torch.no_grad():
        module.qkv.weight[: C // H] += torch.randn(C // H, C)


def test_reattention_mixes_heads_and_plain_attention_does_not():
    x = torch.randn(B, N, C)
    for cls, mixes in [(ReAttention, True), (Attention, False)]:
        module = cls(C, H).eval()
        before = module(x, return_attn=True)[1]
        _head0_query_perturbed(module)
        after = module(x, return_attn=True)[1]
        if mixes:  # the softmax maps stay per head; the applied (mixed) maps do not
            assert torch.allclose(before.softmax[:, 1:], after.softmax[:, 1:])
            before, after = before.mixed, after.mixed
        assert not torch.allclose(before[:, 0], after[:, 0])
        assert torch.allclose(before[:, 1:], after[:, 1:]) != mixes


def test_lsla_projects_only_q_and_starts_with_zero_outer_bias():
    module = LSLAttention(C, H, (4, 4), cls_token=False)
    names = {n.split(".")[0] for n, _ in module.named_parameters()}
    assert names == {"q", "scale", "inner_bias", "outer_bias", "proj"}
    assert torch.count_nonzero(module.outer_bias) == 0
    x = torch.randn(B, N, C)
    out, amap = module(x)
    assert out.shape == (B, N, C)
    torch.testing.assert_close(amap.sum(-1), torch.ones(B, H, N))  # the map reported is the softmax map
    with torch.no_grad():
        module.outer_bias += 0.1
    out2, amap2 = module(x)
    assert not torch.allclose(out2, out) and torch.equal(amap2, amap)  # the outer bias acts after the softmax


def test_lsla_dynamic_scale_is_one_value_per_head_and_offset_and_learns_per_offset():
    module = LSLAttention(C, H, (4, 4), cls_token=False)
    _, size = relative_index((4, 4), cls_token=False)
    assert module.scale.shape == (H, size)
    torch.testing.assert_close(module.scale, torch.full((H, size), (C // H) ** -0.5))  # the fixed scale at init
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    x = torch.randn(B, N, C)
    module(x)[0].square().mean().backward()
    optimizer.step()
    per_offset = module.scale.detach()
    assert (per_offset.std(dim=1) > 1e-4).all()  # every head's scale now differs across relative offsets
    # the scale that multiplies logit (t, s) is the table entry of the offset between t and s
    index = module.rel_index
    scale_map = module._bias(module.scale)
    assert torch.equal(scale_map[:, 0, 1], per_offset[:, index[0, 1]])
    assert not torch.equal(scale_map[:, 0, 1], scale_map[:, 0, 5])


def test_relative_index_covers_offsets():
    index, size = relative_index((3, 5), cls_token=False)
    assert size == 5 * 9 and index.shape == (15, 15) and index.unique().numel() == size
    assert (index.diagonal() == index[0, 0]).all()
    index, size = relative_index((7,), cls_token=True)
    assert size == 15 and index.shape == (8, 8) and index.unique().numel() == size


def test_token_pooling_shapes():
    x = torch.randn(B, 1 + 16, C)
    assert Pool1d(C, 48)(x).shape == (B, 1 + 8, 48)
    assert Pool2d(C, 48, (4, 4))(x[:, 1:]).shape == (B, 4, 48)


def test_deit_tiny_spec_gives_timm_logits_with_timm_weights():
    """LayerNorm eps 1e-6 as in timm/DeiT: timm's deit_tiny weights in the deit_tiny.yaml model, same logits."""
    timm = pytest.importorskip("timm")  # in the test extra; skipped only where the extra is not installed
    from conftest import SPACES
    from psvit_nas import ArchSpec, PSViT

    torch.manual_seed(0)
    reference = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    for p in reference.parameters():  # timm zero-inits some biases; make every weight count
        p.data.add_(0.02 * torch.randn_like(p))
    renames = {"cls_token": "stem.cls_token", "pos_embed": "stem.pos_embed", "patch_embed.": "stem.",
               "blocks.": "stages.0."}
    state = {}
    for key, value in reference.state_dict().items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old):]
        state[key] = value
    model = PSViT.from_spec(ArchSpec.from_yaml(SPACES / "deit_tiny.yaml")).eval()
    model.load_state_dict(state)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (model(x) - reference(x)).abs().max().item()
    assert diff < 1e-4, diff

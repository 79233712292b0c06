import json
import math

import torch

from conftest import SPACES
from psvit_nas import Arch, PSViT, SearchSpace
from psvit_nas.analysis import analyze, attention_maps, layer_labels, write_report
from psvit_nas.cli import main
from psvit_nas.data import load_split

SPACE = SearchSpace.from_yaml(SPACES / "tiny_imagenet.yaml")
ARCH = Arch((("share", "layer", "reattn", "lsla", "identity", "layer"),
             ("layer", "lsla", "identity", "identity", "share", "reattn"),
             ("lsla", "identity", "identity", "identity", "identity", "layer")))


def _images(n=8):
    val = load_split("digits", "val", SPACE, transform=lambda img: img)
    # digits upscaled to the space's 64x64 RGB: real images, always available offline
    x = torch.stack([val[i][0] for i in range(n)]).float().div(255)
    return torch.nn.functional.interpolate(x, size=64).repeat(1, 3, 1, 1)


def test_maps_labels_and_similarity_structure(tmp_path):
    model = PSViT.from_spec(SPACE.spec(ARCH))
    maps = attention_maps(model, _images())
    labels = layer_labels(model)
    assert len(maps) == len(labels) == 13
    assert maps[0].shape == (8, 2, 64, 64) and maps[-1].shape == (8, 3, 4, 4)
    result = analyze(model, _images(), threshold=0.8)
    sim = result["similarity"]
    a, b = labels.index("1.1:share-a"), labels.index("1.1:share-b")
    assert sim[a][b] == 1.0 or abs(sim[a][b] - 1.0) < 1e-6
    stage_of = [int(label.split(".")[0]) for label in labels]
    for i in range(13):
        for j in range(13):
            assert math.isnan(sim[i][j]) == (stage_of[i] != stage_of[j])
    assert all(0.0 <= c <= 1.0 + 1e-6 for c, label in zip(result["cross_head"], labels) if "reattn" not in label)
    write_report(result, tmp_path)
    data = json.loads((tmp_path / "attention_similarity.json").read_text())
    assert data["layers"] == labels and data["similarity"][0][-1] is None
    assert (tmp_path / "attention_similarity.png").read_bytes()[:4] == b"\x89PNG"


def test_like_compared_with_like_share_pairs_apart_and_entropy():
    arch = Arch((("reattn", "share", "reattn", "layer", "identity", "identity"),) + ARCH.stages[1:])
    model = PSViT.from_spec(SPACE.spec(arch))
    labels = layer_labels(model)
    r1, a, b, r2, plain = (labels.index(x) for x in ("1.1:reattn", "1.2:share-a", "1.2:share-b", "1.3:reattn",
                                                     "1.4:layer"))
    result = analyze(model, _images(), threshold=0.5)
    sim, used = result["similarity"], result["map_used"]
    assert used[r1][r2] == "reattn-mixed" and used[r1][plain] == "softmax" and used[a][b] == "softmax"
    maps = attention_maps(model, _images())
    # a Re-Attention layer meets other layers with its softmax map: a distribution, so non-negative cosines
    assert sim[r1][a] > 0.1 and sim[r2][plain] > 0.1
    expected = torch.nn.functional.cosine_similarity(maps[r1].mixed, maps[r2].mixed, dim=-1).mean().item()
    assert abs(sim[r1][r2] - expected) < 1e-6
    # the share pair (one map, similarity 1 by construction) is reported apart from adjacent pairs
    assert result["share_pairs"] == 2 and abs(sim[a][b] - 1.0) < 1e-6
    adjacent = [(i, i + 1) for i in range(len(labels) - 1) if stage(labels[i]) == stage(labels[i + 1])
                and not (labels[i].endswith("share-a") and labels[i + 1].endswith("share-b"))]
    assert (a, b) not in adjacent and len(adjacent) == result["adjacent_pairs"]
    assert result["adjacent_above"] == sum(sim[i][j] > 0.5 for i, j in adjacent)
    assert all(0.0 < e <= 1.0 + 1e-6 for e in result["entropy"])
    with torch.no_grad():  # zero queries and keys: every map is uniform, relative entropy 1
        for name, p in model.named_parameters():
            if name.endswith(("qkv.weight", "qkv.bias", ".q.weight", ".q.bias", "inner_bias")):
                p.zero_()
            if name.endswith("scale"):
                p.zero_()
    uniform = analyze(model, _images())["entropy"]
    assert all(abs(e - 1.0) < 1e-5 for e in uniform)


def stage(label: str) -> str:
    return label.split(".")[0]


def test_analyze_command_on_real_images(tmp_path, tiny_imagenet_dir, capsys):
    spec_path = tmp_path / "arch.yaml"
    SPACE.spec(ARCH).to_yaml(spec_path)
    model = PSViT.from_spec(SPACE.spec(ARCH))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    code = main(["analyze", "--arch", str(spec_path), "--weights", str(tmp_path / "model.pt"), "--data",
                 str(tiny_imagenet_dir), "--out", str(tmp_path / "out"), "--images", "16"])
    assert code == 0
    out = capsys.readouterr().out
    assert "adjacent layer pairs" in out
    data = json.loads((tmp_path / "out" / "attention_similarity.json").read_text())
    assert data["images"] == 16 and len(data["similarity"]) == 13


def test_one_d_pooling_compares_only_matching_token_counts():
    space = SearchSpace.from_yaml(SPACES / "psvit_1d_tiny.yaml")
    arch = Arch(tuple(("layer", "share") + ("identity",) * 4 for _ in range(3)))
    model = PSViT.from_spec(space.spec(arch))
    result = analyze(model, torch.randn(1, 3, 224, 224))
    sim = result["similarity"]
    assert len(sim) == 9 and math.isnan(sim[0][3]) and not math.isnan(sim[3][5])
    assert abs(sim[1][2] - 1.0) < 1e-6  # the share pair of stage 1

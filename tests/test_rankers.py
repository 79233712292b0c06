"""Rankers beyond weight sharing: the proxies against values worked out by hand, the fine-tune ranker's copy,
the calibrated ranker's leave-one-out, and `evolve --fitness NAME` end to end."""
import json
import math
import random

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from conftest import SPACES
from psvit_nas import ArchSpec, SearchSpace
from psvit_nas.cli import main
from psvit_nas.rankers import Evaluator, FitnessSet
from psvit_nas.train import load_supernet
from psvit_nas.rankers.proxies import dss, grad_norm, naswot, snip, synflow
from psvit_nas.rankers import RANKERS, FinetuneRanker, ProxyRanker
from psvit_nas.rankers.calibrated import Ridge, leave_one_out

DIGITS = SearchSpace.from_yaml(SPACES / "digits.yaml")


def _linear(weight, bias=None):
    layer = nn.Linear(len(weight[0]), len(weight), bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return layer


# ----- the proxies, by hand -------------------------------------------------------------------------------
def test_synflow_of_a_two_layer_linear_net_is_twice_its_path_sum():
    """R = |w2| |W1| 1 = 1*3 + 2*3.5 = 10; each of two bias-free linear layers contributes R."""
    net = nn.Sequential(_linear([[1, -2], [3, 0.5]]), _linear([[-1, 2]]))
    before = [p.clone() for p in net.parameters()]
    assert synflow(net, torch.randn(5, 2), torch.zeros(5, dtype=torch.long)) == pytest.approx(20.0)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # the model is never changed


def test_grad_norm_and_snip_of_one_linear_layer():
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([0])
    # zero weights: p = (1/2, 1/2), dL/dW = (p - onehot) x^T = [[-.5, -1], [.5, 1]]
    assert grad_norm(_linear([[0, 0], [0, 0]]), x, y) == pytest.approx(math.sqrt(2.5))
    # identity weights: logits (1, 2), p0 = 1/(1+e); |W00 g00| + |W11 g11| = e/(1+e) * 1 + e/(1+e) * 2
    assert snip(_linear([[1, 0], [0, 1]]), x, y) == pytest.approx(3 * math.e / (1 + math.e), rel=1e-6)


def test_naswot_is_the_log_determinant_of_the_activation_pattern_kernel():
    net = nn.Sequential(_linear([[1], [-1]], [0, 0]), nn.GELU())
    # patterns (1, 0) and (0, 1): K = [[2, 0], [0, 2]], log det 4
    assert naswot(net, torch.tensor([[1.0], [-1.0]]), torch.zeros(2, dtype=torch.long)) == pytest.approx(math.log(4))
    assert naswot(nn.Sequential(_linear([[1]])), torch.ones(2, 1), torch.zeros(2, dtype=torch.long)) == 0.0
    assert net.training  # its mode is restored


class _AttnMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = _linear([[3, 0], [0, 4]])
        self.mlp = _linear([[1, -2]])

    def forward(self, x):
        return self.mlp(self.attn(x))


def test_dss_adds_attention_diversity_and_mlp_saliency():
    """R = |m| |W| 1. dR/dW = |m| 1^T (rank one: nuclear norm |m| sqrt 2 = sqrt 10), ||W||_nuc = 7;
    MLP saliency sum |m_i| (|W| 1)_i = 1*3 + 2*4."""
    value = dss(_AttnMlp(), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    assert value == pytest.approx(7 * math.sqrt(10) + 11, rel=1e-9)


def test_a_proxy_ranker_is_deterministic_whatever_the_global_random_state():
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    arch = DIGITS.sample(random.Random(3))
    ranker = ProxyRanker(DIGITS, "snip", (x, y))
    first = ranker(arch)
    torch.manual_seed(123)
    assert ranker(arch) == first and math.isfinite(first)


# ----- the calibrated ranker ------------------------------------------------------------------------------
def test_leave_one_out_never_sees_the_row_it_predicts():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    noise = rng.normal(size=60)  # a target that depends on nothing but the row: nothing to learn
    assert abs(stats.kendalltau(leave_one_out(x.tolist(), noise.tolist()), noise).statistic) < 0.25
    linear = x @ [1.0, -2.0, 0.5, 0.0]  # a target the features explain: ranked almost perfectly
    assert stats.kendalltau(leave_one_out(x.tolist(), linear.tolist(), alpha=0.01), linear).statistic > 0.9
    i = 7
    fitted = Ridge(np.delete(x, i, 0).tolist(), np.delete(noise, i).tolist())
    assert leave_one_out(x.tolist(), noise.tolist())[i] == pytest.approx(fitted(x[i].tolist()))


# ----- with a supernet ------------------------------------------------------------------------------------
def test_the_finetune_ranker_leaves_the_supernet_bit_identical(supernet):
    net, _ = load_supernet(supernet)
    batches, calib = FitnessSet("digits", "data", 200, 100, 2, 64).load(DIGITS)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ranker = FinetuneRanker(Evaluator(net, batches, calib), calib, steps=3)
    arch = DIGITS.sample(random.Random(1))
    first = ranker.metrics(arch)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert ranker.metrics(arch) == first and first["loss"] > 0 and 0 <= first["top1"] <= 100
    assert ranker(arch) == -first["loss"]


def _records(folder, n=6):
    """A study's records folder: n architectures with two seeds each, and a schedule probe to ignore."""
    folder.mkdir()
    for i in range(n):
        arch = str(DIGITS.sample(random.Random(10 + i)))
        for seed in (0, 1):
            (folder / f"retrain-a{i}-seed{seed}.json").write_text(json.dumps({"arch": arch, "val_top1": 50 + i}))
    (folder / "retrain-a0-seed0-e15.json").write_text(json.dumps({"arch": "not|an|arch", "val_top1": 0}))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("ranker", RANKERS)
def test_evolve_with_every_ranker(tmp_path, supernet, ranker, capsys, request):
    extra = {"calibrated": ["--records", str(_records(tmp_path / "records"))],
             "finetune": ["--finetune-steps", "2"]}.get(ranker, [])
    if ranker == "fewshot":
        extra = ["--fewshot", request.getfixturevalue("fewshot")]
    out = tmp_path / "search"
    assert main(["evolve", "--supernet", supernet, "--flops", "1.2M", "--out", str(out), "--population", "4",
                 "--generations", "1", "--topk", "2", "--fitness", ranker, "--bn-batches", "1", *extra]) == 0
    best = ArchSpec.from_yaml(out / "best.yaml")
    assert best.metrics["ranker"] == ranker and best.metrics["macs"] <= 1.2e6
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == 4 and all(math.isfinite(h["fitness"]) for h in history)
    assert best.metrics["fitness"] == max(h["fitness"] for h in history)
    assert f"best: {ranker} fitness" in capsys.readouterr().out


@pytest.mark.parametrize("extra, expected", [
    (["--fitness", "vibes"], "unknown ranker 'vibes'"),
    (["--fitness", "calibrated"], "--records"),
    (["--fitness", "synflow", "--records", "somewhere"], "only --fitness calibrated"),
    (["--fitness", "naswot", "--backend", "ray"], "--backend"),
    (["--fitness", "finetune", "--bn-batches", "0"], "--bn-batches"),
    (["--fitness", "finetune", "--finetune-steps", "0"], "--finetune-steps"),
    (["--fitness", "calibrated", "--records", "RECORDS3"], "at least 5 architectures"),
    (["--fitness", "fewshot"], "--fewshot DIR"),
    (["--fitness", "fewshot", "--fewshot", "nowhere"], "nowhere/fewshot.yaml: not found"),
    (["--fewshot", "nowhere"], "only --fitness fewshot"),
])
def test_bad_rankers_are_one_line_and_exit_2(tmp_path, supernet, capsys, extra, expected):
    if "RECORDS3" in extra:
        extra[extra.index("RECORDS3")] = str(_records(tmp_path / "records", n=3))
    out = tmp_path / "search"
    assert main(["evolve", "--supernet", supernet, "--flops", "1.2M", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not out.exists()


def test_size_debiased_fitness_takes_out_the_supernets_trend_with_macs():
    from psvit_nas.rankers.debiased import SizeTrend, reference_paths, size_trend

    space = SearchSpace.from_yaml(SPACES / "tiny_imagenet.yaml")
    paths = reference_paths(space)
    assert len(set(paths)) == len(paths) == 24 and paths == reference_paths(space)  # fixed, distinct
    macs = [space.cost_table.macs(a) for a in paths]
    sized = [30 + 4 * math.log(m) for m in macs]  # a supernet whose fitness is its size and nothing else
    trend = size_trend(space, paths, sized)
    flat = [trend(m, f) for m, f in zip(macs, sized)]
    assert trend.slope == pytest.approx(4) and max(flat) - min(flat) == pytest.approx(0, abs=1e-9)
    skill = [i % 3 for i in range(len(paths))]  # what a supernet knows beyond size stays, size goes
    fitness = [f + k for f, k in zip(sized, skill)]
    trend = size_trend(space, paths, fitness)
    debiased = [trend(m, f) for m, f in zip(macs, fitness)]
    assert abs(np.corrcoef(np.log(macs), debiased)[0, 1]) < 1e-9
    assert trend.undo(macs[0], debiased[0]) == pytest.approx(fitness[0])
    assert SizeTrend.fit([1e6, 1e6, 1e6], [10, 20, 30]).slope == 0.0  # no spread of sizes: nothing to take out

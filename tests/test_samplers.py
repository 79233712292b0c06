import itertools
import json
import os
import random
import subprocess
import sys
import time

import pytest

from psvit_nas.errors import ConfigError
import torch
import torch.nn.functional as F

from conftest import ROOT, SPACES
from psvit_nas import Arch, SearchSpace, Supernet, parse_budget
from psvit_nas.cli import main
from psvit_nas.limits import budget, fits
from psvit_nas.samplers import FairSampler, FlopsSampler, SandwichSampler, extreme_archs, make_sampler

DIGITS = SearchSpace.from_yaml(SPACES / "digits.yaml")


def test_fair_step_runs_every_choice_of_every_cell_once_and_each_gets_a_gradient():
    sampler = FairSampler(DIGITS, seed=4)
    paths = sampler(7)
    assert len(paths) == 5 and paths == sampler(7) and paths != sampler(8)
    for s, stage in enumerate(DIGITS.stages):
        for c in range(stage.cells):
            assert sorted(p.stages[s][c] for p in paths) == sorted(stage.choices)
    net = Supernet(DIGITS).train()
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    for path in paths:  # the loop's accumulation: one backward per path, no update in between
        (F.cross_entropy(net(x, path), y) / len(paths)).backward()
    for s, stage in enumerate(net.stages):
        for c, cell in enumerate(stage):
            for choice, module in cell.items():
                grads = [p.grad for p in module.parameters()]  # None: the choice did not run
                assert choice == "identity" or (grads and all(g is not None for g in grads)), (s, c, choice)
    assert sum(p.grad.abs().sum() for p in net.parameters() if p.grad is not None) > 0


@pytest.mark.parametrize("bounds", [None, ("0.2M", "0.6M")])
def test_flops_sampler_trains_every_size_as_often(bounds):
    """Uniform choices put few paths in the range's outer thirds; the MACs prior puts a third in each."""
    flops_range = tuple(map(parse_budget, bounds)) if bounds else None
    low, high = flops_range or DIGITS.cost_table.macs_range
    thirds = [low + (high - low) * i / 3 for i in (1, 2)]
    def shares(sampler):
        macs = [DIGITS.cost_table.macs(sampler(step)[0]) for step in range(600)]
        assert all(low <= m <= high for m in macs)
        return [sum(m < thirds[0] for m in macs) / 600, sum(m > thirds[1] for m in macs) / 600]
    sampler = FlopsSampler(DIGITS, seed=2, flops_range=flops_range)
    assert sampler(9) == sampler(9) and sampler(9) != sampler(10)
    assert all(0.25 < share < 0.42 for share in shares(sampler))
    assert min(shares(make_sampler("uniform", DIGITS, 2, flops_range))) < 0.2


def test_flops_sampler_in_a_range_too_narrow_for_its_band_still_gives_paths_inside_it():
    low, high = parse_budget("0.35M"), parse_budget("0.36M")
    sampler = FlopsSampler(_tiny_space(), seed=0, flops_range=(low, high))
    assert all(low <= sampler.space.cost_table.macs(sampler(step)[0]) <= high for step in range(50))


def _tiny_space():
    data = DIGITS.to_dict()
    for stage in data["stages"]:
        stage["cells"] = 2
    return SearchSpace.from_dict(data)


@pytest.mark.parametrize("bounds", [(None, None), ("0.2M", "0.6M"), ("0.35M", "0.36M")])
def test_sandwich_extremes_are_the_true_extremes_within_the_range(bounds):
    space = _tiny_space()
    low, high = (parse_budget(b) if b else None for b in bounds)
    every = [Arch(stages) for stages in itertools.product(*(
        list(itertools.product(stage.choices, repeat=stage.cells)) for stage in space.stages))]
    limits = budget(space, high, low)
    within = [a for a in every if fits(limits, a)]
    smallest, largest = extreme_archs(space, low, high)
    macs = space.cost_table.macs
    assert macs(smallest) == min(map(macs, within)) and macs(largest) == max(map(macs, within))
    sampler = SandwichSampler(space, 0, (low, high) if low else None, k=3)
    paths = sampler(5)
    assert paths[:2] == [largest, smallest] and len(paths) == 5 and sampler.distill
    assert all(fits(limits, p) for p in paths)


def test_sandwich_on_a_full_space_matches_its_macs_range():
    smallest, largest = extreme_archs(DIGITS)
    assert (DIGITS.cost_table.macs(smallest), DIGITS.cost_table.macs(largest)) == DIGITS.cost_table.macs_range
    rng = random.Random(0)
    high = parse_budget("1.0M")
    _, capped = extreme_archs(DIGITS, None, high)
    assert DIGITS.cost_table.macs(capped) <= high
    assert all(DIGITS.cost_table.macs(DIGITS.sample(rng, budget(DIGITS, high))) <= DIGITS.cost_table.macs(capped)
               for _ in range(2000))


def test_sandwich_distillation_targets_carry_no_gradient(tmp_path, monkeypatch):
    """The loop's students learn from the largest path's detached predictions, and from the labels."""
    soft, hard = [], []
    original = F.cross_entropy

    def spy(logits, target, *args, **kwargs):
        if target.dtype.is_floating_point:
            soft.append((target.requires_grad, target.sum(1)))
        elif logits.requires_grad:  # a training pass (validation runs under no_grad)
            hard.append(target)
        return original(logits, target, *args, **kwargs)
    monkeypatch.setattr(F, "cross_entropy", spy)
    assert main(["train-supernet", "--config", str(SPACES / "digits.yaml"), "--out", str(tmp_path), "--epochs", "1",
                 "--batch-size", "512", "--sampler", "sandwich", "--sandwich-k", "1", "--val-archs", "1"]) == 0
    assert len(soft) == 2 * 2  # two steps, two students each (smallest and one random)
    assert all(not grad and torch.allclose(total, torch.ones_like(total)) for grad, total in soft)
    assert len(hard) == 2 * 3  # the teacher and both students on the labels too (--distill-weight 0.5)


def test_distill_weight_outside_zero_to_one_is_refused(tmp_path, capsys):
    assert main(["train-supernet", "--config", str(SPACES / "digits.yaml"), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--sampler", "sandwich", "--distill-weight", "1.5"]) == 2
    assert "--distill-weight" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unknown_sampler_and_a_range_fair_cannot_fill(tmp_path):
    with pytest.raises(ConfigError, match="--sampler"):
        make_sampler("greedy", DIGITS, 0)
    with pytest.raises(ConfigError, match="--flops-range"):
        FairSampler(DIGITS, 0, (parse_budget("1.0M"), parse_budget("1.01M")), tries=20)(0)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["sandwich"])  # several paths, accumulated without sync, and distillation
def test_ddp_two_ranks_accumulate_several_paths_identically(sampler, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = {"fair": "29541", "sandwich": "29542"}[sampler]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
         "-m", "psvit_nas.cli", "train-supernet", "--config", str(SPACES / "digits.yaml"), "--out",
         str(tmp_path / "ddp"), "--epochs", "1", "--batch-size", "128", "--sampler", sampler, "--val-archs", "1"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()[-1])
    assert len(set(row["path_digests"])) == 1 and len(set(row["weight_digests"])) == 1
    assert len(row["weight_digests"]) == 2


@pytest.mark.slow
def test_ddp_ranks_all_stop_with_one_line_when_rank0_cannot_build_the_image_cache(tmp_path):
    (tmp_path / "not-a-folder").write_text("")  # the cache cannot be made under a file
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29543",
         "-m", "psvit_nas.cli", "train-supernet", "--config", str(SPACES / "digits.yaml"), "--out",
         str(tmp_path / "ddp"), "--epochs", "1", "--cache", "on", "--cache-dir", str(tmp_path / "not-a-folder")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert time.time() - start < 60  # not the process group's 30-minute timeout
    ours = [line for line in proc.stderr.splitlines() if line.startswith("psvit-nas train-supernet: error:")]
    rank0 = [line for line in ours if "rank 0 could not build" not in line]
    assert proc.returncode != 0 and len(rank0) == 1 and "cannot write the image cache" in rank0[0], proc.stderr
    # rank 1 says why in one line too, unless torchrun stopped it first, once rank 0 had exited
    assert len(ours) <= 2
    assert "Traceback" not in "\n".join(line for line in proc.stderr.splitlines() if "psvit_nas" in line)

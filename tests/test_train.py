import json
import os
import signal
import random
import shutil
import subprocess
import sys

import pytest
import torch
from torch.utils.data import Subset

from conftest import ROOT, SPACES
from psvit_nas import Arch, SearchSpace, Supernet
from psvit_nas.samplers import SAMPLERS
from psvit_nas.cli import main
import psvit_nas.train.loop
from psvit_nas.data import Augment, load_images
from psvit_nas.train import NonFiniteLoss, TrainConfig, fit, load_checkpoint

DIGITS = str(SPACES / "digits.yaml")


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_supernet_training_on_real_images_learns(tiny_imagenet_dir, tmp_path):
    space = SearchSpace.from_yaml(SPACES / "tiny_imagenet.yaml")
    aug = Augment.preset("auto", space.image_size)
    train = load_images(str(tiny_imagenet_dir), "train", space)
    val = load_images(str(tiny_imagenet_dir), "val", space)
    assert len(train) == 5000 and len(val) == 500
    train = Subset(train, torch.randperm(5000, generator=torch.Generator().manual_seed(0))[:2000].tolist())
    cfg = TrainConfig(epochs=3, batch_size=32, lr=2e-3, warmup_epochs=0.5, val_archs=2,
                      augment=aug.to_dict())
    fit(Supernet(space), space, train, val, cfg, tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.5
    assert rows[-1]["val_top1"] > 15.0  # ten classes: chance is 10 %


def _train_digits(out, *extra):
    return main(["train-supernet", "--config", DIGITS, "--out", str(out), "--epochs", "2", "--batch-size", "128",
                 "--seed", "3", *extra])


def test_resume_matches_uninterrupted_run(tmp_path):
    """DESIGN.md invariant 4."""
    assert _train_digits(tmp_path / "full", "--save-every", "1") == 0
    (tmp_path / "cut").mkdir()
    shutil.copy(tmp_path / "full" / "epoch1.pt", tmp_path / "cut" / "last.pt")
    assert _train_digits(tmp_path / "cut", "--resume") == 0
    full = load_checkpoint(tmp_path / "full" / "last.pt")
    resumed = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert full["epoch"] == resumed["epoch"] == 1
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert full["path_digest"] == resumed["path_digest"]
    assert [r["epoch"] for r in _metrics(tmp_path / "cut")] == [2]  # only what the resumed run did
    assert _metrics(tmp_path / "cut")[0]["weight_digests"] == _metrics(tmp_path / "full")[1]["weight_digests"]


@pytest.mark.slow
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_resume_inside_an_epoch_matches_uninterrupted_run(sampler, tmp_path, monkeypatch):
    """DESIGN.md invariant 7: a checkpoint written mid-epoch resumes to the same weights, under every sampler."""
    saved = psvit_nas.train.loop.save_checkpoint
    kept = {}

    def keep_mid_epoch(path, state):
        saved(path, state)
        if state["step"] == 14:  # 10 steps per epoch: step 4 of the second epoch
            kept["path"] = path.parent / "step14.pt"
            saved(kept["path"], state)
    monkeypatch.setattr(psvit_nas.train.loop, "save_checkpoint", keep_mid_epoch)
    extra = ("--checkpoint-every-steps", "7", "--augment", "deit", "--workers", "0", "--sampler", sampler,
             "--batch-size", "32", "--search-holdout", "1170")  # 330 training images: 10 steps of 32
    assert _train_digits(tmp_path / "full", *extra) == 0
    (tmp_path / "cut").mkdir()
    shutil.copy(kept["path"], tmp_path / "cut" / "last.pt")
    shutil.copy(tmp_path / "full" / "metrics.jsonl", tmp_path / "cut" / "metrics.jsonl")
    assert _train_digits(tmp_path / "cut", *extra, "--resume") == 0
    full, resumed = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert full["step"] == resumed["step"] == 20
    for key, value in full["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert full["path_digest"] == resumed["path_digest"]
    rows_full, rows_cut = _metrics(tmp_path / "full"), _metrics(tmp_path / "cut")
    assert [r["epoch"] for r in rows_cut] == [1, 2]  # the first epoch's line kept, the second written once
    assert rows_cut[1]["train_loss"] == pytest.approx(rows_full[1]["train_loss"], rel=1e-12)
    assert rows_cut[1]["weight_digests"] == rows_full[1]["weight_digests"]


def test_standalone_training_and_eval(tmp_path, capsys):
    arch = tmp_path / "arch.yaml"
    assert main(["sample", "--config", DIGITS, "--seed", "2", "--out", str(arch)]) == 0
    assert main(["train", "--arch", str(arch), "--out", str(tmp_path / "run"), "--epochs", "2"]) == 0
    rows = _metrics(tmp_path / "run")
    assert "path_digests" not in rows[-1] and rows[-1]["val_top1"] > 50
    capsys.readouterr()
    assert main(["eval", "--arch", str(arch), "--weights", str(tmp_path / "run" / "last.pt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["top1"] == pytest.approx(rows[-1]["val_top1"])
    assert {"top1", "top5", "loss", "images_per_s"} <= set(result)


def test_batchnorm_is_reestimated_before_each_validation_and_the_weights_are_untouched(tmp_path, capsys):
    """A Re-Attention model's BatchNorm statistics are re-estimated on fixed training batches before each
    validation: the weights train exactly as without it, and the saved model evaluates to what was logged."""
    space = SearchSpace.from_yaml(DIGITS)
    arch = tmp_path / "arch.yaml"
    space.spec(Arch.parse("|".join(["reattn-layer-reattn-lsla"] * 3))).to_yaml(arch)
    runs = {}
    for bn in ("0", "10"):
        out = tmp_path / f"bn{bn}"
        assert main(["train", "--arch", str(arch), "--out", str(out), "--epochs", "2", "--bn-batches", bn]) == 0
        runs[bn] = _metrics(out)
    assert [r["weight_digests"] for r in runs["0"]] == [r["weight_digests"] for r in runs["10"]]
    stats = {bn: [b for k, b in load_checkpoint(tmp_path / f"bn{bn}" / "last.pt", space)["model"].items()
                  if k.endswith("running_mean")] for bn in runs}
    assert stats["0"] and not all(torch.equal(a, b) for a, b in zip(stats["0"], stats["10"]))
    capsys.readouterr()
    assert main(["eval", "--arch", str(arch), "--weights", str(tmp_path / "bn10" / "last.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(runs["10"][-1]["val_top1"])


def test_a_supernets_validation_paths_are_recalibrated_on_copies_and_the_supernet_is_untouched(tmp_path):
    """With --bn-batches the supernet's validation re-estimates BatchNorm on a copy of each path: every tensor of
    the supernet (buffers included) ends as without it, and the logged validation differs."""
    runs = {}
    for bn in ("0", "10"):
        out = tmp_path / f"bn{bn}"
        assert main(["train-supernet", "--config", DIGITS, "--out", str(out), "--epochs", "1", "--batch-size", "128",
                     "--bn-batches", bn]) == 0
        runs[bn] = load_checkpoint(out / "last.pt", SearchSpace.from_yaml(DIGITS))["model"]
    assert runs["0"].keys() == runs["10"].keys()
    assert all(torch.equal(runs["0"][k], runs["10"][k]) for k in runs["0"])
    assert _metrics(tmp_path / "bn0")[-1]["val_loss"] != _metrics(tmp_path / "bn10")[-1]["val_loss"]


@pytest.mark.slow
def test_ddp_two_cpu_ranks_share_paths_and_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
         "-m", "psvit_nas.cli", "train-supernet", "--config", DIGITS, "--out", str(tmp_path / "ddp"),
         "--epochs", "2", "--batch-size", "64"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _metrics(tmp_path / "ddp")
    for row in rows:
        assert len(row["path_digests"]) == 2 and len(set(row["path_digests"])) == 1
        assert len(row["weight_digests"]) == 2 and len(set(row["weight_digests"])) == 1
    assert rows[0]["path_digests"] != rows[1]["path_digests"]
    config = (tmp_path / "ddp" / "config.yaml").read_text()
    assert "world_size: 2" in config


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    space = SearchSpace.from_yaml(DIGITS)
    train = load_images("digits", "train", space)
    val = load_images("digits", "val", space)
    net = Supernet(space)
    fit(net, space, train, val, TrainConfig(epochs=1, batch_size=256, val_archs=1), tmp_path)
    state = load_checkpoint(tmp_path / "last.pt")
    state["optimizer"]["state"][0]["exp_avg_sq"].fill_(float("nan"))  # the next update turns weights into NaN
    torch.save(state, tmp_path / "last.pt")
    good = (tmp_path / "last.pt").read_bytes()
    cfg = TrainConfig(epochs=2, batch_size=256, val_archs=1)
    with pytest.raises(NonFiniteLoss, match=r"step \d+ .*path.*last good checkpoint: "):
        fit(Supernet(space), space, train, val, cfg, tmp_path, resume=True)
    assert (tmp_path / "last.pt").read_bytes() == good


def test_flops_range_restricts_paths_and_an_empty_range_fails(tmp_path, capsys):
    code = main(["train-supernet", "--config", DIGITS, "--out", str(tmp_path / "r"), "--epochs", "1",
                 "--flops-range", "1.0M", "1.00001M"])
    err = capsys.readouterr().err
    assert code == 2 and "--flops-range" in err and not (tmp_path / "r" / "last.pt").exists()
    code = main(["train-supernet", "--config", DIGITS, "--out", str(tmp_path / "ok"), "--epochs", "1",
                 "--flops-range", "0.5M", "1.2M"])
    assert code == 0
    # the run's sampler (as config.yaml records it) draws every path inside the range, none outside
    import yaml

    from psvit_nas.samplers import make_sampler

    cfg = yaml.safe_load((tmp_path / "ok" / "config.yaml").read_text())["train"]
    assert cfg["flops_range"] == [0.5e6, 1.2e6]
    space = SearchSpace.from_yaml(DIGITS)
    sampler, table = make_sampler("uniform", space, cfg["seed"], cfg["flops_range"]), space.cost_table
    assert all(0.5e6 <= table.macs(path) <= 1.2e6 for step in range(200) for path in sampler(step))
    assert any(not 0.5e6 <= table.macs(space.sample(random.Random(i))) <= 1.2e6 for i in range(200))


def test_checkpoint_from_another_space_is_refused(tmp_path, capsys):
    assert _train_digits(tmp_path / "sn", "--epochs", "1") == 0
    other = yaml_space_copy(tmp_path, width=40)
    code = main(["train-supernet", "--config", other, "--out", str(tmp_path / "sn"), "--epochs", "2", "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "last.pt" in err and "space" in err
    spec = tmp_path / "deit.yaml"
    shutil.copy(SPACES / "deit_tiny.yaml", spec)
    code = main(["eval", "--supernet", str(tmp_path / "sn" / "last.pt"), "--arch", str(spec)])
    assert code == 2 and "trained on 'digits'" in capsys.readouterr().err


def yaml_space_copy(tmp_path, width):
    import yaml

    data = yaml.safe_load((SPACES / "digits.yaml").read_text())
    data["stages"][0]["width"] = width
    data["stages"][0]["heads"] = 2
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_augmentation_flags_override_the_preset(tmp_path):
    import yaml

    assert main(["train-supernet", "--config", DIGITS, "--out", str(tmp_path), "--epochs", "1", "--augment", "deit",
                 "--mixup", "0", "--label-smoothing", "0.2", "--batch-size", "256"]) == 0
    augment = yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["augment"]
    assert augment["mixup"] == 0 and augment["cutmix"] == 1.0 and augment["label_smoothing"] == 0.2
    assert augment["randaugment"] == "rand-m9-mstd0.5-inc1"


@pytest.mark.slow
def test_compiled_cells_compute_what_eager_cells_compute():
    """--compile: each cell compiled on its own gives the eager supernet's outputs and gradients."""
    from psvit_nas.samplers import PathSampler
    from psvit_nas.train import compile_cells

    space = SearchSpace.from_yaml(DIGITS)
    eager, compiled = Supernet(space), Supernet(space)
    compiled.load_state_dict(eager.state_dict())
    # AOTAutograd traces each cell's forward and backward as inductor would; inductor's code generation (half
    # a minute of C++ compiling on a cold machine) is PyTorch's to test, not this project's
    compile_cells(compiled, backend="aot_eager")
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    path = PathSampler(space, 0).path(0)
    for net in (eager, compiled):
        torch.nn.functional.cross_entropy(net(x, path), y).backward()
    assert torch.allclose(eager(x, path), compiled(x, path), atol=1e-5)
    assert torch.allclose(eager.head.weight.grad, compiled.head.weight.grad, atol=1e-5)
    assert set(compiled.state_dict()) == set(eager.state_dict())  # checkpoints stay interchangeable


def test_a_run_diverging_before_its_first_checkpoint_does_not_name_one(tmp_path, capsys):
    code = main(["train-supernet", "--config", DIGITS, "--out", str(tmp_path / "r"), "--epochs", "1",
                 "--lr", "1e4", "--clip-grad", "0", "--val-archs", "1", "--workers", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "non-finite loss" in err
    assert "no checkpoint was written" in err and not (tmp_path / "r" / "last.pt").exists()


PREEMPT_ARGS = ["train-supernet", "--config", DIGITS, "--epochs", "3", "--batch-size", "64", "--val-archs", "1",
                "--workers", "0"]


def _cli(*argv):
    return [sys.executable, "-W", "ignore", "-m", "psvit_nas.cli", *PREEMPT_ARGS, *argv]


def _final_digest(out):
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["weight_digests"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("preempt") / "full"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_cli("--out", str(out)), check=True, capture_output=True, env=env, cwd=ROOT)
    return _final_digest(out)


def test_sigint_is_noted_like_sigterm_and_gives_exit_code_130(tmp_path):
    """Ctrl-C takes the same path as SIGTERM (tested end to end below): noted, not raised, exit status 130."""
    from psvit_nas.train import Dist, Preempted
    from psvit_nas.train.distributed import Signals

    before = signal.getsignal(signal.SIGINT)
    with Signals() as signals:
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt inside the block
        assert signals.agreed(Dist()) == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before  # restored after it
    assert Preempted(signal.SIGINT, tmp_path / "last.pt", 7).code == 130
    assert Preempted(signal.SIGTERM, tmp_path / "last.pt", 7).code == 143


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(15, 143)])  # SIGTERM; SIGINT shares its path (test above)
def test_a_signal_stops_training_with_a_checkpoint_and_resume_is_exact(tmp_path, uninterrupted, signum, code):
    """Preemption: the step in flight finishes, is checkpointed, the run exits 143 / 130 with one line, and
    --resume ends with the weights of an uninterrupted run (invariant 7)."""
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "part"
    proc = subprocess.Popen(_cli("--out", str(out)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)
    metrics = out / "metrics.jsonl"
    while proc.poll() is None and not (metrics.is_file() and metrics.read_text().strip()):
        time.sleep(0.05)
    time.sleep(0.3)  # inside the second epoch
    proc.send_signal(signum)
    err = proc.communicate(timeout=300)[1].strip()
    assert proc.returncode == code, err
    assert "after step" in err.splitlines()[-1] and "--resume" in err.splitlines()[-1]
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] < 2
    resumed = subprocess.run(_cli("--out", str(out), "--resume"), capture_output=True, text=True, env=env, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _final_digest(out) == uninterrupted

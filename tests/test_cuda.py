"""Tests marked `cuda`: the CUDA paths (bf16 autocast, a resume, torch.compile). Skipped without a GPU, never
faked; `scripts/gpu_check.sh` runs them on a lent device."""
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import SPACES
from psvit_nas import SearchSpace, Supernet
from psvit_nas.cli import main
from psvit_nas.train import compile_cells, load_checkpoint

DEVICE = torch.device("cuda")


def needs_cuda(test):
    """Marked `cuda` and skipped without a device."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")(test))
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only branch")
def test_gpu_check_without_cuda_says_so_in_one_line_and_writes_nothing(tmp_path):
    done = subprocess.run(["bash", "scripts/gpu_check.sh", str(tmp_path / "gpu.md")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == ["gpu_check: no CUDA device here: ran the CPU-side checks only, "
                                                "wrote nothing"]
    assert not (tmp_path / "gpu.md").exists()


@needs_cuda
@pytest.mark.parametrize("config", ["tiny_imagenet.yaml", "psvit_1d_tiny.yaml"])
def test_supernet_path_equals_export_on_cuda_in_bf16(config):
    space = SearchSpace.from_yaml(SPACES / config)
    net = Supernet(space).to(DEVICE).eval()
    x = torch.randn(4, space.in_chans, space.image_size, space.image_size, device=DEVICE)
    rng = random.Random(0)
    for _ in range(3):
        arch = space.sample(rng)
        model = net.export(arch).to(DEVICE).eval()
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16):
            a, b = net(x, arch).float(), model(x).float()
        assert torch.isfinite(a).all()
        assert (a - b).abs().max() <= 0.05 * a.abs().max() + 1e-3  # bf16 keeps about 3 significant digits


@needs_cuda
def test_resume_on_cuda_equals_an_uninterrupted_run(tmp_path):
    def train(out, *extra):
        return main(["train-supernet", "--config", str(SPACES / "digits.yaml"), "--data", "digits", "--out",
                     str(out), "--epochs", "2", "--batch-size", "128", "--seed", "3", *extra])
    assert train(tmp_path / "full", "--save-every", "1") == 0
    (tmp_path / "cut").mkdir()
    shutil.copy(tmp_path / "full" / "epoch1.pt", tmp_path / "cut" / "last.pt")
    assert train(tmp_path / "cut", "--resume") == 0
    full, cut = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert full["step"] == cut["step"]
    for key, value in full["model"].items():  # CUDA kernels may sum in another order: equal to float noise
        assert torch.allclose(value.float(), cut["model"][key].float(), atol=1e-4), key


@needs_cuda
def test_compiled_path_equals_eager():
    space = SearchSpace.from_yaml(SPACES / "tiny_imagenet.yaml")
    model = Supernet(space).export(space.sample(random.Random(1))).to(DEVICE).eval()
    x = torch.randn(8, space.in_chans, space.image_size, space.image_size, device=DEVICE)
    with torch.no_grad():
        eager = model(x)
        compile_cells(model)
        compiled = model(x)
    assert torch.allclose(eager, compiled, atol=1e-4)

"""Training benchmarks, measured side by side in one run.

1. Supernet training step time over the exported standalone model's step time, for the
   same architectures and batch (goal: at most 1.05).
2. Training and inference images/s of an exported psvit_2d_tiny path at <= 1.3 G MACs
   against timm's DeiT-Tiny (1.26 G MACs) at 224x224 (goal: at least as fast).

    python scripts/bench_train.py [--space search_spaces/tiny_imagenet.yaml] [--archs 4]
    python scripts/bench_train.py --device cuda --bf16 [--compile]   # on a GPU (scripts/gpu_check.sh)
"""
from __future__ import annotations

import argparse
import random
import statistics
import contextlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from psvit_nas import SearchSpace, Supernet, format_macs, parse_budget
from psvit_nas.limits import budget
from psvit_nas.train import compile_cells

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
DEVICE = torch.device("cpu")
BF16 = False     # bf16 autocast on the forward, as `train --amp auto` does on CUDA
COMPILE = False  # regional torch.compile of our cells, torch.compile of DeiT-Tiny


def autocast():
    return torch.autocast(DEVICE.type, torch.bfloat16) if BF16 else contextlib.nullcontext()


def on_device(model, ours: bool = True):
    """The model on the benchmark's device, compiled when asked (ours per cell, as `--compile` trains)."""
    model = model.to(DEVICE)
    if COMPILE:
        if ours:
            compile_cells(model)
        else:
            model = torch.compile(model)
    return model


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def step_times(runs: list, reps: int) -> list[float]:
    """Median seconds per call of each function, calls interleaved so that noise hits all alike."""
    for run in runs:
        run()  # warm-up (and compilation)
    sync()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(reps):
        for run, record in zip(runs, times):
            start = time.perf_counter()
            run()
            sync()
            record.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def train_step(model, x, y, arch=None):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def run():
        opt.zero_grad(set_to_none=True)
        with autocast():
            logits = model(x) if arch is None else model(x, arch)
            loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
    return run


def infer_step(model, x):
    @torch.no_grad()
    def run():
        with autocast():
            model(x)
    return run


def supernet_overhead(space_path: Path, archs: int, batch: int, reps: int) -> None:
    space = SearchSpace.from_yaml(space_path)
    net = on_device(Supernet(space).train())
    rng = random.Random(0)
    x = torch.randn(batch, space.in_chans, space.image_size, space.image_size, device=DEVICE)
    y = torch.randint(0, space.num_classes, (batch,), device=DEVICE)
    print(f"\n1) supernet vs exported standalone, {space.name}, batch {batch}, median of {reps} steps")
    print(f"{'arch MACs':>10}{'supernet ms':>13}{'standalone ms':>15}{'ratio':>8}")
    ratios = []
    for _ in range(archs):
        arch = space.sample(rng)
        model = on_device(net.export(arch).train())
        t_net, t_model = step_times([train_step(net, x, y, arch), train_step(model, x, y)], reps)
        ratios.append(t_net / t_model)
        print(f"{format_macs(space.cost_table.macs(arch)):>10}{t_net * 1e3:>13.1f}{t_model * 1e3:>15.1f}"
              f"{ratios[-1]:>8.3f}")
    print(f"{'median':>38}{statistics.median(ratios):>8.3f}   (goal <= 1.05)")


def versus_deit(batch: int, reps: int, paths: int) -> None:
    try:
        import timm
    except ImportError:
        print("\n2) skipped: pip install timm (the 'bench' extra) to compare with DeiT-Tiny")
        return
    space = SearchSpace.from_yaml(SPACES / "psvit_2d_tiny.yaml")
    rng = random.Random(0)
    net = Supernet(space)
    deit = on_device(timm.create_model("deit_tiny_patch16_224", pretrained=False), ours=False)
    x = torch.randn(batch, 3, 224, 224, device=DEVICE)
    y = torch.randint(0, 1000, (batch,), device=DEVICE)
    where = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"\n2) 224x224, batch {batch}, {where}, bf16 {BF16}, compile {COMPILE}: exported psvit_2d_tiny paths "
          f"at 1.2-1.3G MACs vs timm DeiT-Tiny (1.254G MACs); images/s")
    print(f"{'path':<40}{'MACs':>8}{'train':>8}{'DeiT':>8}{'ratio':>7}{'infer':>8}{'DeiT':>8}{'ratio':>7}")
    for _ in range(paths):
        arch = space.sample(rng, budget(space, parse_budget("1.3G"), parse_budget("1.2G")))
        ours = on_device(net.export(arch))
        ours.train(), deit.train()
        t_ours, t_deit = step_times([train_step(ours, x, y), train_step(deit, x, y)], reps)
        ours.eval(), deit.eval()
        i_ours, i_deit = step_times([infer_step(ours, x), infer_step(deit, x)], reps)
        label = str(arch) if len(str(arch)) < 38 else str(arch)[:35] + "..."
        print(f"{label:<40}{format_macs(space.cost_table.macs(arch)):>8}{batch / t_ours:>8.1f}"
              f"{batch / t_deit:>8.1f}{t_deit / t_ours:>7.2f}{batch / i_ours:>8.1f}{batch / i_deit:>8.1f}"
              f"{i_deit / i_ours:>7.2f}")
    print("goal: ratios >= 1.00")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default=str(SPACES / "tiny_imagenet.yaml"))
    parser.add_argument("--archs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--deit-batch", type=int, default=16)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--paths", type=int, default=3, help="psvit_2d_tiny paths compared with DeiT-Tiny")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on the forward")
    parser.add_argument("--compile", action="store_true", help="torch.compile both sides")
    args = parser.parse_args()
    global DEVICE, BF16, COMPILE
    DEVICE, BF16, COMPILE = torch.device(args.device), args.bf16, args.compile
    torch.manual_seed(0)
    supernet_overhead(Path(args.space), args.archs, args.batch, args.reps)
    versus_deit(args.deit_batch, args.reps, args.paths)


if __name__ == "__main__":
    main()

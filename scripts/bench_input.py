"""Input-pipeline benchmark: does supernet training run at the speed of the model?

Measured side by side in one run, on a Tiny-ImageNet-layout folder with a space's images:

1. the decoded-image cache: building it (the first epoch's extra cost) and reopening it;
2. the input path alone, no model: the per-image PIL pipeline that training used before
   (one process, two workers) against streamed decode + batch augmentation and cached +
   batch augmentation;
3. end-to-end supernet training (`fit`, the loop `train-supernet` runs) against the
   compute-only rate of the same steps on batches already in memory, in interleaved rounds;
4. the search's fitness evaluation: loading the fitness images streamed against cached,
   and candidates/s.

    python scripts/bench_input.py --data ../shared/data/tiny-imagenet-100 [--compile]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import v2

from psvit_nas import SearchSpace, Supernet
from psvit_nas.data import Augment, BatchAugment, CacheConfig, TrainLoader, holdout_split, load_images, load_split
from psvit_nas.rankers import Evaluator, FitnessSet
from psvit_nas.samplers import PathSampler
from psvit_nas.train import TrainConfig, compile_cells, fit, param_groups, warmup_cosine

ROOT = Path(__file__).resolve().parents[1]
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # fit() trains on the same device


def per_image_pipeline(space: SearchSpace, aug: Augment) -> v2.Compose:
    """What training ran before the batch pipeline: PIL decode, then every op per image."""
    size = space.image_size
    return v2.Compose([v2.ToImage(), v2.Resize((size, size), antialias=True),
                       v2.RandomCrop(size, padding=aug.crop_padding, padding_mode="reflect"),
                       v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])


def rate(batches, limit: int) -> float:
    """Images/s of iterating `batches` for `limit` batches (after one warm-up batch)."""
    it = iter(batches)
    next(it)
    seen, start = 0, time.perf_counter()
    for _ in range(limit):
        x, _ = next(it)
        seen += len(x)
    return seen / (time.perf_counter() - start)


def compute_only(net, space, batches, cfg: TrainConfig, cycle=None) -> float:
    """The training step of `fit` on batches already in memory (paths uniform, or `cycle`d): images/s."""
    optimizer = torch.optim.AdamW(param_groups(net, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(len(batches), len(batches), 0.01))
    sampler = PathSampler(space, cfg.seed)
    net.train()
    start = time.perf_counter()
    for step, (x, y) in enumerate(batches):
        path = cycle[step % len(cycle)] if cycle else sampler.path(step)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
            logits = net(x, path)  # bf16 autocast on CUDA, as in fit
        loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
        loss.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
        optimizer.step()
        scheduler.step()
    return sum(len(x) for x, _ in batches) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "tiny-imagenet-100"))
    parser.add_argument("--config", default=str(ROOT / "search_spaces" / "tiny_imagenet.yaml"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60, help="training steps per end-to-end round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--input-batches", type=int, default=150, help="batches timed for the input path alone")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--fitness-images", type=int, default=5000)
    parser.add_argument("--compile", action="store_true", help="also 5): --compile against eager on a few paths")
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary folder (cold cache)")
    args = parser.parse_args()
    space = SearchSpace.from_yaml(args.config)
    aug = Augment.preset("auto", space.image_size)
    cache = CacheConfig("on", args.cache_dir or tempfile.mkdtemp(prefix="psvit-bench-input-"), workers=2)
    print(f"{args.data} on {DEVICE}, {space.name} ({space.image_size}px), batch {args.batch}, "
          f"{torch.get_num_threads()} threads, "
          f"augmentation {aug}")

    # 1. the cache
    start = time.perf_counter()
    train = load_images(args.data, "train", space, cache=cache)
    built = time.perf_counter() - start
    start = time.perf_counter()
    train = load_images(args.data, "train", space, cache=cache)
    val = load_images(args.data, "val", space, cache=cache)
    reopened = time.perf_counter() - start
    print(f"\n1) decoded-image cache of {len(train)} training images ({train.images.numel() / 1e6:.0f} MB): "
          f"built in {built:.1f} s ({len(train) / built:.0f} img/s, 2 decode workers); reopened (with the val "
          f"split) in {reopened:.2f} s")

    # 2. the input path alone
    augment = BatchAugment(aug, space, 0)
    stream = load_split(args.data, "train", space)
    rows = []
    for label, workers in (("per-image PIL pipeline (before), 1 process", 0),
                           ("per-image PIL pipeline (before), 2 workers", 2)):
        old = load_split(args.data, "train", space, transform=per_image_pipeline(space, aug))
        loader = DataLoader(old, batch_size=args.batch, shuffle=True, num_workers=workers, drop_last=True)
        rows.append((label, rate(loader, args.input_batches // (4 if workers == 0 else 2))))
    for label, dataset, workers in (("streamed decode + batch augmentation, 2 workers", stream, 2),
                                    ("cached + batch augmentation", train, 0)):
        loader = TrainLoader(dataset, args.batch, augment, DEVICE, workers=workers)
        limit = args.input_batches // 2 if workers else args.input_batches * 4
        rows.append((label, rate(loader.epoch(0), min(limit, len(loader) - 1))))
    print(f"\n2) input path alone (no model), {space.image_size}x{space.image_size}")
    print(f"{'pipeline':<52}{'images/s':>10}")
    for label, value in rows:
        print(f"{label:<52}{value:>10.0f}")
    print(f"{'goal':<52}{'>= 20000':>10}")

    # 3. end to end against compute only, interleaved
    cfg = TrainConfig(epochs=1, batch_size=args.batch, warmup_epochs=1, seed=0, augment=aug.to_dict(), val_archs=1)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    e2e_set = Subset(train, order[: args.steps * args.batch].tolist())
    small_val = Subset(val, range(256))
    ready = list(TrainLoader(e2e_set, args.batch, augment, DEVICE).epoch(0))
    net = Supernet(space).to(DEVICE)
    e2e, compute = [], []
    work = Path(tempfile.mkdtemp(prefix="psvit-bench-run-"))
    for r in range(args.rounds):
        torch.manual_seed(r)
        e2e.append(fit(Supernet(space), space, e2e_set, small_val, cfg, work / f"r{r}")["images_per_s"])
        compute.append(compute_only(net, space, ready, cfg))
    ratios = [a / b for a, b in zip(e2e, compute)]
    print(f"\n3) supernet training, {args.steps} steps per round, {args.rounds} interleaved rounds")
    print(f"{'round':<8}{'end-to-end img/s':>18}{'compute-only img/s':>20}{'ratio':>8}")
    for r, (a, b, q) in enumerate(zip(e2e, compute, ratios), 1):
        print(f"{r:<8}{a:>18.0f}{b:>20.0f}{q:>8.3f}")
    print(f"{'median':<8}{statistics.median(e2e):>18.0f}{statistics.median(compute):>20.0f}"
          f"{statistics.median(ratios):>8.3f}   (goal >= 0.90)")

    # 4. fitness evaluation
    keep, held = holdout_split(len(train), min(args.fitness_images, len(train) // 10))
    fitness = FitnessSet(args.data, "data", len(held), len(held), 10, 128)
    rng_paths = PathSampler(space, 1)
    trained = Supernet(space).to(DEVICE)
    print(f"\n4) fitness evaluation on {len(held)} held-out training images, {args.candidates} candidates")
    print(f"{'images':<10}{'load s':>8}{'candidates/s':>14}{'50-candidate search s':>24}")
    for label, mode in (("streamed", "off"), ("cached", "on")):
        start = time.perf_counter()
        batches, calib = fitness.load(space, CacheConfig(mode, cache.dir, workers=2))
        loaded = time.perf_counter() - start
        evaluator = Evaluator(trained, batches, calib, str(DEVICE))
        start = time.perf_counter()
        for i in range(args.candidates):
            evaluator(rng_paths.path(i))
        per_s = args.candidates / (time.perf_counter() - start)
        print(f"{label:<10}{loaded:>8.1f}{per_s:>14.3f}{loaded + 50 / per_s:>24.0f}")
    if args.compile:
        compiled_against_eager(space, ready, cfg, args.rounds)


def compiled_against_eager(space: SearchSpace, ready, cfg: TrainConfig, rounds: int, paths: int = 6) -> None:
    """5) regional torch.compile: warm-up (compilation) time, then steady-state steps on the same paths."""
    sampler = PathSampler(space, cfg.seed)
    cycle = [sampler.path(i) for i in range(paths)]
    nets = {"eager": Supernet(space).to(DEVICE), "compiled": Supernet(space).to(DEVICE)}
    nets["compiled"].load_state_dict(nets["eager"].state_dict())
    compile_cells(nets["compiled"])
    print(f"\n5) --compile (regional) against eager, {paths} paths cycled, {len(ready)} steps per round")
    warm = {}
    for name, net in nets.items():
        start = time.perf_counter()
        compute_only(net, space, ready[:paths], cfg, cycle)
        warm[name] = time.perf_counter() - start
    rates = {name: [] for name in nets}
    for _ in range(rounds):
        for name, net in nets.items():
            rates[name].append(compute_only(net, space, ready, cfg, cycle))
    eager, compiled = statistics.median(rates["eager"]), statistics.median(rates["compiled"])
    print(f"{'':<10}{'first pass s':>14}{'img/s (median)':>16}")
    print(f"{'eager':<10}{warm['eager']:>14.1f}{eager:>16.0f}")
    print(f"{'compiled':<10}{warm['compiled']:>14.1f}{compiled:>16.0f}   ratio {compiled / eager:.3f}")


if __name__ == "__main__":
    main()

"""Benchmark the cost model: architectures per second, and error against FlopCounterMode / 2.

    python scripts/bench_cost.py [--archs 200]
"""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from psvit_nas import PSViT, SearchSpace
from psvit_nas.cost import flop_counter_macs

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--archs", type=int, default=200, help="random archs per space checked against FlopCounter")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'space':<16}{'archs/s':>12}{'max rel err':>14}{'checked':>9}")
    for path in sorted(SPACES.glob("*.yaml")):
        if path.stem == "deit_tiny":
            continue
        space = SearchSpace.from_yaml(path)
        rng = random.Random(0)
        archs = [space.sample(rng) for _ in range(20_000)]
        table = space.cost_table
        start = time.perf_counter()
        for arch in archs:
            table(arch)
        rate = len(archs) / (time.perf_counter() - start)
        worst = 0.0
        for arch in archs[: args.archs]:
            model = PSViT.from_spec(space.spec(arch))
            worst = max(worst, abs(table(arch).macs / flop_counter_macs(model) - 1))
        print(f"{space.name:<16}{rate:>12,.0f}{worst:>14.2e}{args.archs:>9}")


if __name__ == "__main__":
    main()

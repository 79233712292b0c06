"""Search throughput: candidates scored per second, local against Ray, on the same supernet and
images, and the share of search time spent outside candidate evaluation (goal: under 5 %).

    python scripts/bench_search.py [--data PATH] [--population 20 --generations 3] [--ray-workers 2]

Uses a freshly initialised tiny_imagenet supernet (throughput does not depend on training)
and the held-out images of --data (default: PSVIT_NAS_TEST_DATA, else digits with its space).
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from psvit_nas import SearchSpace, Supernet
from psvit_nas.data import load_split
from psvit_nas.rankers import FitnessSet
from psvit_nas.search import SearchConfig, evolve
from psvit_nas.train import save_checkpoint

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("PSVIT_NAS_TEST_DATA", "digits"))
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--holdout", type=int, default=500)
    parser.add_argument("--ray-workers", type=int, default=2)
    args = parser.parse_args()
    space = SearchSpace.from_yaml(SPACES / ("digits.yaml" if args.data == "digits" else "tiny_imagenet.yaml"))
    load_split(args.data, "val", space)  # fail early on a bad --data
    work = Path(tempfile.mkdtemp(prefix="psvit-bench-search-"))
    torch.manual_seed(0)
    checkpoint = work / "supernet.pt"
    save_checkpoint(checkpoint, {"kind": "supernet", "space": space.to_dict(), "model": Supernet(space).state_dict(),
                                 "run": {"data": args.data, "search_holdout": args.holdout}})
    fitness = FitnessSet(args.data, "data", args.holdout, args.holdout, 5, 128)
    budget = sum(space.cost_table.macs_range) / 2
    cfg = SearchConfig(population=args.population, generations=args.generations, topk=args.population // 4,
                       max_macs=budget)
    rows = []
    for backend in ("local", "ray"):
        search = evolve(str(checkpoint), cfg, fitness, work / backend, backend=backend, workers=args.ray_workers)
        t = search.timing
        rows.append((backend, len(search.state.history), t["search_s"], t["evaluation_s"], search.best.arch))
    print(f"\n{space.name}, {args.holdout} held-out images of {args.data}, {cfg.evaluations} candidates, "
          f"{torch.get_num_threads()} torch threads locally, {args.ray_workers} Ray actors")
    print(f"{'backend':<8}{'candidates':>11}{'search s':>10}{'cand/s':>8}{'outside eval':>14}")
    for backend, n, total, inside, _ in rows:
        print(f"{backend:<8}{n:>11}{total:>10.1f}{n / total:>8.2f}{100 * (total - inside) / total:>13.1f}%")
    print(f"same best arch on both backends: {rows[0][4] == rows[1][4]}")


if __name__ == "__main__":
    main()

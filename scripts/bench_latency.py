"""Benchmark latency prediction on this machine, for each shipped ImageNet space.

For each space: how long the table takes to build; predicted (calibrated sum of parts) and
plain-sum latency against measured latency of `--archs` random architectures (share within
+-10 %, median and 90th-percentile error); the measurement's own noise floor (the same
architectures measured a second time); and what a MACs budget misses: the spread of
latency among architectures of equal MACs, and the MACs-best against the latency-best
architecture under matched budgets (both maximise MACs, the capacity a search fills).

    python scripts/bench_latency.py [--threads 1 2] [--archs 50] [--batch-size 1] [--device cpu]
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from psvit_nas import Arch, SearchSpace, format_macs
from psvit_nas.latency import build_table, error_stats, measure_arch
from psvit_nas.search import Search, SearchConfig

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
IMAGENET = ("psvit_1d_tiny", "psvit_2d_tiny", "psvit_2d_small")


def fill_budget(space: SearchSpace, table, max_macs=None, max_latency=None, seed=0):
    """The architecture a search that rewards capacity (MACs) finds under a budget: GA, 400 candidates."""
    cfg = SearchConfig(population=40, generations=10, topk=10, max_macs=max_macs, max_latency_ms=max_latency,
                       seed=seed, mutation_prob=0.2)
    with tempfile.TemporaryDirectory() as tmp:
        search = Search(space, cfg, lambda archs: [space.cost_table.macs(a) / 1e6 for a in archs], tmp,
                        latency=table)
        search.run()
    return search.best


def composition(arch: str) -> str:
    cells = arch.replace("|", "-").split("-")
    return " ".join(f"{c}:{cells.count(c)}" for c in ("layer", "share", "identity", "reattn", "lsla"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", nargs="+", default=list(IMAGENET))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--archs", type=int, default=50)
    parser.add_argument("--calibrate", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows, budget_rows = [], []
    for name in args.spaces:
        space = SearchSpace.from_yaml(SPACES / f"{name}.yaml")
        for threads in args.threads:
            start = time.perf_counter()
            table = build_table(space, args.device, args.batch_size, threads, args.calibrate, args.archs,
                                progress=False)
            build_s = time.perf_counter() - start
            archs = table.validation["archs"]
            torch.set_num_threads(threads)
            again = [measure_arch(space, Arch.parse(a["arch"]), args.batch_size, args.device) for a in archs]
            noise = error_stats(again, [a["measured_ms"] for a in archs])
            v = table.validation
            rows.append((name, threads, build_s, statistics.median(a["measured_ms"] for a in archs),
                         v["plain_sum"], v["predicted"], noise, table.scale))
            print(f"{name} ({threads} threads) done in {time.perf_counter() - start:.0f} s", flush=True)
            if threads != args.threads[0]:
                continue
            rng = random.Random(0)
            samples = [space.sample(rng) for _ in range(4000)]
            macs_budget = statistics.median(space.cost_table.macs(a) for a in samples)
            latency_budget = statistics.median(table.predict(a) for a in samples)
            near = [table.predict(a) for a in samples if abs(space.cost_table.macs(a) / macs_budget - 1) <= 0.02]
            by_macs = fill_budget(space, table, max_macs=macs_budget)
            by_latency = fill_budget(space, table, max_latency=latency_budget)
            differ = sum(x != y for x, y in zip(by_macs.arch.replace("|", "-").split("-"),
                                                by_latency.arch.replace("|", "-").split("-")))
            budget_rows.append((name, threads, macs_budget, latency_budget, near, by_macs, by_latency, differ))

    device = f"{args.device}, batch {args.batch_size}"
    print(f"\nLatency prediction ({device}; {args.archs} random architectures per row, calibration on "
          f"{args.calibrate} others)")
    print(f"{'space':<16}{'threads':>8}{'build s':>9}{'median ms':>10}{'scale':>7}"
          f"{'sum: in 10%':>13}{'med err':>9}{'p90':>7}{'pred: in 10%':>14}{'med err':>9}{'p90':>7}"
          f"{'noise: in 10%':>15}{'med':>7}")
    for name, threads, build_s, median_ms, plain, pred, noise, scale in rows:
        print(f"{name:<16}{threads:>8}{build_s:>9.0f}{median_ms:>10.2f}{scale:>7.3f}"
              f"{100 * plain['within_10pct']:>12.0f}%{100 * plain['median_error']:>8.1f}%"
              f"{100 * plain['p90_error']:>6.1f}%"
              f"{100 * pred['within_10pct']:>13.0f}%{100 * pred['median_error']:>8.1f}%{100 * pred['p90_error']:>6.1f}%"
              f"{100 * noise['within_10pct']:>14.0f}%{100 * noise['median_error']:>6.1f}%")
    print("\nWhat a MACs budget misses (predicted latency; budgets: medians of uniform samples; both searches "
          "maximise MACs)")
    for name, threads, macs_budget, latency_budget, near, by_macs, by_latency, differ in budget_rows:
        print(f"{name} ({threads} thread(s)): architectures within 2 % of {format_macs(macs_budget)} MACs predict "
              f"{min(near):.1f} to {max(near):.1f} ms ({max(near) / min(near):.2f}x, {len(near)} samples)")
        for label, r in (("MACs-best   ", by_macs), ("latency-best", by_latency)):
            print(f"  {label} (<= {format_macs(macs_budget) if r is by_macs else f'{latency_budget:.1f} ms'}): "
                  f"{format_macs(r.macs)} MACs, {r.latency_ms:.1f} ms predicted, {composition(r.arch)}")
        print(f"  they differ in {differ} of {len(by_macs.arch.replace('|', '-').split('-'))} cells; the MACs-best "
              f"is {100 * (by_macs.latency_ms / latency_budget - 1):+.0f} % over the latency budget")


if __name__ == "__main__":
    main()
